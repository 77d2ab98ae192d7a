"""Packing a variable-length sequence of vectors into one fixed-width tensor, for the representations that are
more than one vector: the clicks a target-attention predictor reads (`sequence`, MINER's category bias) and
NPA's word states. A fixed width lets the representations of different batches be concatenated and indexed
like any other vectors (fast evaluation encodes each item and history once and gathers the rows).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def pack_sequence(clicked: Tensor, mask: Tensor, length: int) -> Tensor:
    """clicked [B, H, d], mask [B, H] -> [B, length, d + 1] (H <= length): the vectors (padding rows zero),
    padded to `length`, with the mask as the last channel."""
    m = mask.unsqueeze(-1).to(clicked.dtype)
    packed = torch.cat([clicked * m, m], dim=-1)
    return F.pad(packed, (0, 0, 0, length - clicked.shape[1]))


def unpack_sequence(packed: Tensor) -> tuple[Tensor, Tensor]:
    """[B, H, d + 1] -> vectors [B, H, d], mask [B, H]."""
    if packed.dim() != 3:
        raise ValueError(
            f"expected a packed history [B, H, d + 1] (model.user=sequence), got {tuple(packed.shape)}"
        )
    return packed[..., :-1], packed[..., -1] > 0.5
