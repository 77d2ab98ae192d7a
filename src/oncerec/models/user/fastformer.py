"""Fastformer's user encoder: learned positions, Fastformer layers over clicked items, additive pooling."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from oncerec.config.schema import ModelConfig
from oncerec.models.interfaces import ModelSpec, UserEncoder
from oncerec.models.layers import AdditiveAttention, FastformerLayer
from oncerec.models.registry import register


@register("user", "fastformer")
class FastformerUser(UserEncoder):
    reads: ClassVar[frozenset[str]] = frozenset(
        {"hidden_size", "num_heads", "dropout", "num_layers", "attention_hidden"}
    )

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.pos = nn.Embedding(spec.history_len, cfg.hidden_size)
        self.layers = nn.ModuleList(
            FastformerLayer(cfg.hidden_size, cfg.num_heads, cfg.dropout) for _ in range(cfg.num_layers)
        )
        self.pool = AdditiveAttention(cfg.hidden_size, cfg.attention_hidden)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        h = clicked + self.pos.weight[: clicked.shape[1]]
        for layer in self.layers:
            h = layer(h, mask)
        return self.pool(h, mask)
