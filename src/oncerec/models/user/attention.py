"""User encoders built on attention over the clicked-item vectors [B, H, d] (mask [B, H]; user ids unused)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oncerec.config.schema import ModelConfig
from oncerec.models.interfaces import ModelSpec, UserEncoder
from oncerec.models.layers import AdditiveAttention, SelfAttention, any_valid, attendable
from oncerec.models.registry import register
from oncerec.models.user.sequence import pack_sequence


@register("user", "attention")
class AdditiveUser(UserEncoder):
    """NAML: additive attention over clicked items."""

    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size", "attention_hidden"})

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.pool = AdditiveAttention(cfg.hidden_size, cfg.attention_hidden)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return self.pool(clicked, mask)


@register("user", "self_attention")
class SelfAttentionUser(UserEncoder):
    """NRMS: multi-head self-attention among clicked items, then additive attention."""

    reads: ClassVar[frozenset[str]] = frozenset(
        {"hidden_size", "num_heads", "dropout", "attention_residual", "attention_hidden"}
    )

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.attn = SelfAttention(cfg.hidden_size, cfg.num_heads, cfg.dropout, cfg.attention_residual)
        self.drop = nn.Dropout(cfg.dropout)
        self.pool = AdditiveAttention(cfg.hidden_size, cfg.attention_hidden)

    def per_item(self, vectors: Tensor) -> Tensor:
        return self.attn.project(vectors)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return self.pool(self.drop(self.attn.attend(clicked, mask)), mask)


def pool_interests(logits: Tensor, clicked: Tensor, mask: Tensor) -> Tensor:
    """Poly attention's pooling: attention logits [B, ..., C, H] of C context codes over the clicked items
    [B, H, d] (mask [B, H]) -> interest vectors [B, ..., C, d], zero for an empty history."""
    shape = (mask.shape[0],) + (1,) * (logits.dim() - 2) + (mask.shape[1],)
    logits = logits.masked_fill(~attendable(mask).view(shape), float("-inf"))
    interests = torch.einsum("b...h,bhd->b...d", torch.softmax(logits, dim=-1), clicked)
    return interests * any_valid(mask).view(shape[:-1] + (1,)).to(interests.dtype)


@register("user", "poly")
class PolyUser(UserEncoder):
    """MINER's poly attention (Li et al., 2022): `num_interests` learned context codes c_i each attend over the
    clicked items n_j with the logits c_i . tanh(W n_j), giving several interest vectors [B, C, d].

    With `model.miner_category_bias` the logits also get a bias that depends on the candidate, so the pooling
    moves to the predictor (`target_aware`): the representation is then the clicks themselves, each with its
    C logits and its category id, packed to the dataset's history length (`pack_sequence`: one fixed width, so
    that fast evaluation can concatenate and index the representations of every user)."""

    reads: ClassVar[frozenset[str]] = frozenset(
        {"num_interests", "attention_hidden", "hidden_size", "miner_category_bias"}
    )

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        codes = torch.empty(cfg.num_interests, cfg.attention_hidden)
        self.codes = nn.Parameter(nn.init.xavier_uniform_(codes, gain=nn.init.calculate_gain("tanh")))
        self.proj = nn.Linear(cfg.hidden_size, cfg.attention_hidden, bias=False)
        self.reads_categories = cfg.miner_category_bias  # the Recommender then passes the clicks' categories
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
