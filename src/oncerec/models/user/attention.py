"""User encoders built on attention over the clicked-item vectors [B, H, d] (mask [B, H]; user ids unused)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oncerec.config.schema import ModelConfig
from oncerec.models.layers import AdditiveAttention, SelfAttention, any_valid, attendable


class AdditiveUser(nn.Module):
    """NAML: additive attention over clicked items."""

    def __init__(self, cfg: ModelConfig, spec: dict):
        super().__init__()
        self.pool = AdditiveAttention(cfg.hidden_size, cfg.attention_hidden)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return self.pool(clicked, mask)


class SelfAttentionUser(nn.Module):
    """NRMS: multi-head self-attention among clicked items, then additive attention."""

    def __init__(self, cfg: ModelConfig, spec: dict):
        super().__init__()
        self.attn = SelfAttention(cfg.hidden_size, cfg.num_heads, cfg.dropout, cfg.attention_residual)
        self.drop = nn.Dropout(cfg.dropout)
        self.pool = AdditiveAttention(cfg.hidden_size, cfg.attention_hidden)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return self.pool(self.drop(self.attn(clicked, mask)), mask)


class PolyUser(nn.Module):
    """MINER: poly attention, i.e. `num_interests` learned context codes each attend over the clicked items,
    giving several interest vectors [B, C, d]."""

    def __init__(self, cfg: ModelConfig, spec: dict):
        super().__init__()
        self.codes = nn.Parameter(torch.randn(cfg.num_interests, cfg.attention_hidden) * 0.02)
        self.proj = nn.Linear(cfg.hidden_size, cfg.attention_hidden, bias=False)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        logits = torch.einsum("ca,bha->bch", self.codes, torch.tanh(self.proj(clicked)))
        logits = logits.masked_fill(~attendable(mask).unsqueeze(1), float("-inf"))
        interests = torch.einsum("bch,bhd->bcd", torch.softmax(logits, dim=-1), clicked)
        return interests * any_valid(mask).unsqueeze(-1).to(clicked.dtype)
