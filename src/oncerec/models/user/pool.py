"""Mean of the clicked-item vectors: the baseline user encoder."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from oncerec.config.schema import ModelConfig
from oncerec.models.interfaces import ModelSpec, UserEncoder
from oncerec.models.layers import masked_mean
from oncerec.models.registry import register


@register("user", "pool")
class PoolUser(UserEncoder):
    reads: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return masked_mean(clicked, mask)
