"""The inner product of the user vector and each candidate: the predictor of the matching models (NAML, NRMS,
LSTUR, Fastformer), which an index of item vectors ranks exactly (see serve/export.py)."""

from __future__ import annotations

import torch
from torch import Tensor

from oncerec.models.config import ModelConfig
from oncerec.models.interfaces import ComponentConfig, ModelSpec, Predictor
from oncerec.models.registry import register


@register("predictor", "dot")
class DotPredictor(Predictor):
    """The inner product of the user vector and each candidate vector."""

    def __init__(self, cfg: ComponentConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        return torch.einsum("bd,bkd->bk", user, candidates)
