"""MINER (Li et al., 2022): poly attention over the clicked items (user encoder `poly`: several interest
vectors per user) and target-aware aggregation of their scores (predictor `target_aware`), with the
disagreement regularisation of the interests and, with `model.miner_category_bias`, category-aware attention
weighting (the interests are then pooled per candidate, in the predictor)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from oncerec.models.config import ModelConfig
from oncerec.models.interfaces import ComponentConfig, ModelSpec, Predictor, UserEncoder
from oncerec.models.layers import any_valid, attendable
from oncerec.models.packing import pack_sequence, unpack_sequence
from oncerec.models.registry import register


class PolyConfig(ComponentConfig):
    """User encoder `poly` (MINER's poly attention)."""

    num_interests: int = Field(4, ge=1, description="Number of interest vectors (poly-attention codes).")


class TargetAwareConfig(ComponentConfig):
    """Predictor `target_aware` (MINER's click predictor)."""

    disagreement_weight: float = Field(
        0.8,
        ge=0,
        description="Weight beta of the disagreement regularisation added to the training loss, the mean cosine "
        "similarity of every pair of a user's interest vectors (0: off).",
    )


def pool_interests(logits: Tensor, clicked: Tensor, mask: Tensor) -> Tensor:
    """Poly attention's pooling: attention logits [B, ..., C, H] of C context codes over the clicked items
    [B, H, d] (mask [B, H]) -> interest vectors [B, ..., C, d], zero for an empty history."""
    shape = (mask.shape[0],) + (1,) * (logits.dim() - 2) + (mask.shape[1],)
    logits = logits.masked_fill(~attendable(mask).view(shape), float("-inf"))
    interests = torch.einsum("b...h,bhd->b...d", torch.softmax(logits, dim=-1), clicked)
    return interests * any_valid(mask).view(shape[:-1] + (1,)).to(interests.dtype)


def disagreement(interests: Tensor) -> Tensor:
    """MINER's disagreement regularisation: the mean cosine similarity of every pair (i, j) of a user's C
    interest vectors [..., C, d], 1/C^2 sum_i sum_j cos(v_i, v_j) (i = j included, as in the paper), averaged
    over the users (and candidates). Minimising it spreads the interests apart."""
    v = F.normalize(interests.float(), dim=-1)
    return (v @ v.transpose(-1, -2)).mean()


@register("user", "poly")
class PolyUser(UserEncoder):
    """Poly attention: `num_interests` learned context codes c_i each attend over the clicked items n_j with
    the logits c_i . tanh(W n_j), giving several interest vectors [B, C, d].

    With `model.miner_category_bias` the logits also get a bias that depends on the candidate, so the pooling
    moves to the predictor (`target_aware`): the representation is then the clicks themselves, each with its
    C logits and its category id, packed to the dataset's history length (`pack_sequence`: one fixed width, so
    that fast evaluation can concatenate and index the representations of every user)."""

    config_class = PolyConfig

    def __init__(self, cfg: PolyConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        codes = torch.empty(cfg.num_interests, model.attention_hidden)
        self.codes = nn.Parameter(nn.init.xavier_uniform_(codes, gain=nn.init.calculate_gain("tanh")))
        self.proj = nn.Linear(model.hidden_size, model.attention_hidden, bias=False)
        self.reads_categories = (
            model.miner_category_bias
        )  # the Recommender then passes the clicks' categories
        self.length = spec.history_len

    def forward(
        self, clicked: Tensor, mask: Tensor, user: Tensor, categories: Tensor | None = None
    ) -> Tensor:
        logits = torch.einsum("ca,bha->bch", self.codes, torch.tanh(self.proj(clicked)))
        if not self.reads_categories:
            return pool_interests(logits, clicked, mask)
        # float32 whatever the autocast: category ids must stay exact integers
        per_click = torch.cat(
            [clicked.float(), logits.transpose(1, 2).float(), categories.unsqueeze(-1).float()], -1
        )
        return pack_sequence(per_click[:, -self.length :], mask[:, -self.length :], self.length)


@register("predictor", "target_aware")
class TargetAwarePredictor(Predictor):
    """MINER's click predictor: each interest vector v_i scores the candidate x (v_i . x), and the C scores are
    averaged with the target-aware attention softmax_i(x . GELU(W v_i)).

    With `model.miner_category_bias` (category-aware attention weighting) the interest vectors are pooled here,
    per candidate: the poly-attention logit of every code over click j gets the bias cos(e_j, e_x), the cosine
    similarity of the click's and the candidate's category embeddings (the user representation is the packed
    clicks of `PolyUser`; the Recommender passes the candidates' categories).

    The interest vectors of the last training forward stay in `interests`, for the disagreement regularisation
    (`regularization`, added to the training loss by `training/losses.py`)."""

    config_class = TargetAwareConfig
    chunk = 32  # candidates pooled at a time: bounds the [B, K, C, d] interest vectors of a long impression

    def __init__(self, cfg: TargetAwareConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.proj = nn.Linear(model.hidden_size, model.hidden_size, bias=False)
        self.reads_categories = model.miner_category_bias
        # of a packed click: vector, logits, category
        self.channels = [model.hidden_size, model.user.num_interests, 1] if self.reads_categories else []
        self.category = (
            nn.Embedding(spec.vocab_sizes["category"], model.category_dim, padding_idx=0)
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
