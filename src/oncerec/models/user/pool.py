"""Mean of the clicked-item vectors: the baseline user encoder."""

from __future__ import annotations

from torch import Tensor, nn

from oncerec.config.schema import ModelConfig
from oncerec.models.layers import masked_mean


class PoolUser(nn.Module):
    def __init__(self, cfg: ModelConfig, spec: dict):
        super().__init__()

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return masked_mean(clicked, mask)
