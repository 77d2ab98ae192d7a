"""The clicked items themselves as the user representation, for target-attention predictors (DIN).

The representation is one tensor [B, history_len, d + 1]: the clicked-item vectors (padding rows zero),
padded to the dataset's history length, with the history mask as the last channel. A fixed width lets the
representations of different batches be concatenated and indexed like any other user vectors (the fast
evaluation path encodes each history once and scores impressions by lookup).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from oncerec.config.schema import ModelConfig
from oncerec.models.interfaces import SEQUENCE, ModelSpec, UserEncoder
from oncerec.models.registry import register


def pack_sequence(clicked: Tensor, mask: Tensor, length: int) -> Tensor:
    """clicked [B, H, d], mask [B, H] -> [B, length, d + 1] (H <= length)."""
    m = mask.unsqueeze(-1).to(clicked.dtype)
    packed = torch.cat([clicked * m, m], dim=-1)
    return F.pad(packed, (0, 0, 0, length - clicked.shape[1]))


def unpack_sequence(packed: Tensor) -> tuple[Tensor, Tensor]:
    """[B, H, d + 1] -> clicked-item vectors [B, H, d], mask [B, H]."""
    if packed.dim() != 3:
        raise ValueError(
            f"expected a packed history [B, H, d + 1] (model.user=sequence), got {tuple(packed.shape)}"
        )
    return packed[..., :-1], packed[..., -1] > 0.5


@register("user", "sequence")
class SequenceUser(UserEncoder):
    """No pooling: hands the clicked-item vectors and their mask to the predictor (use with `din`)."""

    gives = SEQUENCE
    reads: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.length = spec.history_len

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return pack_sequence(clicked[:, -self.length :], mask[:, -self.length :], self.length)
