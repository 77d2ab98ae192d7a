"""Scores from a user representation and candidate vectors [B, K, d] -> [B, K]."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from oncerec.config.schema import ModelConfig
from oncerec.models.interfaces import VECTOR_AND_WORD_QUERY, ModelSpec, Predictor
from oncerec.models.item.words import unpack_words
from oncerec.models.layers import disagreement, personal_pool
from oncerec.models.registry import register
from oncerec.models.user.attention import pool_interests
from oncerec.models.user.sequence import unpack_sequence


@register("predictor", "dot")
class DotPredictor(Predictor):
    """Inner product of the user vector and each candidate (NAML, NRMS, LSTUR, Fastformer)."""

    reads: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        return torch.einsum("bd,bkd->bk", user, candidates)


@register("predictor", "target_aware")
class TargetAwarePredictor(Predictor):
    """MINER's click predictor (Li et al., 2022): each interest vector v_i scores the candidate x (v_i . x), and
    the C scores are averaged with the target-aware attention softmax_i(x . GELU(W v_i)).

    With `model.miner_category_bias` (category-aware attention weighting) the interest vectors are pooled here,
    per candidate: the poly-attention logit of every code over click j gets the bias cos(e_j, e_x), the cosine
    similarity of the click's and the candidate's category embeddings (the user representation is the packed
    clicks of `PolyUser`; the Recommender passes the candidates' categories).

    The interest vectors of the last training forward stay in `interests`, for the disagreement regularisation
    (`regularization`, added to the training loss by `train/losses.py`)."""

    chunk = 32  # candidates pooled at a time: bounds the [B, K, C, d] interest vectors of a long impression
    reads: ClassVar[frozenset[str]] = frozenset(
        {"hidden_size", "miner_category_bias", "num_interests", "category_dim", "disagreement_weight"}
    )

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)
        self.reads_categories = cfg.miner_category_bias
        self.channels = [cfg.hidden_size, cfg.num_interests, 1]  # of a packed click: vector, logits, category
        self.category = (
            nn.Embedding(spec.vocab_sizes["category"], cfg.category_dim, padding_idx=0)
            if self.reads_categories
            else None
        )
        self.interests: Tensor | None = None
        self.disagreement_weight = cfg.disagreement_weight

    def forward(self, user: Tensor, candidates: Tensor, categories: Tensor | None = None) -> Tensor:
        if self.category is None:
            # [B, C, d]: the same interest vectors for every candidate
            interests = user.unsqueeze(1) if user.dim() == 2 else user
            self.interests = interests if self.training else None
            return self._aggregate("bcd,bkd->bkc", interests, candidates)
        packed, mask = unpack_sequence(user)
        clicked, logits, clicked_category = packed.split(self.channels, dim=-1)
        clicked_category = F.normalize(self.category(clicked_category.squeeze(-1).long()), dim=-1)
        scores, kept = [], []
        for cands, cats in zip(candidates.split(self.chunk, 1), categories.split(self.chunk, 1), strict=True):
            bias = torch.einsum("bke,bhe->bkh", F.normalize(self.category(cats), dim=-1), clicked_category)
            attention = logits.transpose(1, 2).unsqueeze(1) + bias.unsqueeze(2)  # [B, K, C, H]
            interests = pool_interests(attention, clicked, mask)  # [B, K, C, d]
            scores.append(self._aggregate("bkcd,bkd->bkc", interests, cands))
            kept.append(interests)
        self.interests = torch.cat(kept, 1) if self.training else None
        return torch.cat(scores, 1)

    def regularization(self) -> Tensor:
        """The disagreement of the interest vectors of the last training forward, weighted by beta."""
        if self.interests is None or not self.disagreement_weight:
            return torch.zeros(())
        return self.disagreement_weight * disagreement(self.interests)

    def _aggregate(self, spec: str, interests: Tensor, candidates: Tensor) -> Tensor:
        scores = torch.einsum(spec, interests, candidates)
        weights = torch.softmax(torch.einsum(spec, F.gelu(self.proj(interests)), candidates), dim=-1)
        return (weights * scores).sum(-1)


@register("predictor", "npa")
class PersonalDotPredictor(Predictor):
    """NPA's click predictor: each candidate's word states are pooled with the user's word query q_w (the
    personalised attention of the news encoder, see `models/user/npa.py`) into r', scored u . r'."""

    takes = VECTOR_AND_WORD_QUERY
    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size", "attention_hidden", "npa_attention"})

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.cfg = cfg

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        u, word_query = user[..., : self.cfg.hidden_size], user[..., self.cfg.hidden_size :]
        states, keys, mask = unpack_words(candidates, self.cfg)  # [B, K, W, d], [B, K, W, a]
        news = personal_pool(states, keys, mask, word_query.unsqueeze(1))  # r' [B, K, d]
        return torch.einsum("bd,bkd->bk", u, news)
