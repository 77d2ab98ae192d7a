"""The clicked items themselves as the user representation, for target-attention predictors (DIN, DKN, BST).

The representation is one tensor [B, history_len, d + 1]: the clicked-item vectors, padded to the dataset's
history length, with the history mask as the last channel (`models/packing.py`).
"""

from __future__ import annotations

from torch import Tensor

from oncerec.models.config import ModelConfig
from oncerec.models.interfaces import SEQUENCE, ComponentConfig, ModelSpec, UserEncoder
from oncerec.models.packing import pack_sequence
from oncerec.models.registry import register


@register("user", "sequence")
class SequenceUser(UserEncoder):
    """No pooling: hands the clicked-item vectors and their mask to the predictor (use with `din`)."""

    gives = SEQUENCE

    def __init__(self, cfg: ComponentConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.length = spec.history_len

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return pack_sequence(clicked[:, -self.length :], mask[:, -self.length :], self.length)
