"""Scores from a user representation and candidate vectors [B, K, d] -> [B, K]."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oncerec.config.schema import ModelConfig


class DotPredictor(nn.Module):
    """Inner product of the user vector and each candidate (NAML, NRMS, LSTUR, Fastformer)."""

    def __init__(self, cfg: ModelConfig, spec: dict):
        super().__init__()

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        return torch.einsum("bd,bkd->bk", user, candidates)


class TargetAwarePredictor(nn.Module):
    """MINER: each interest vector scores the candidate; the scores are averaged with weights that depend on
    how well each interest matches that candidate (target-aware attention)."""

    def __init__(self, cfg: ModelConfig, spec: dict):
        super().__init__()
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        if user.dim() == 2:
            user = user.unsqueeze(1)
        scores = torch.einsum("bcd,bkd->bkc", user, candidates)
        match = torch.einsum("bcd,bkd->bkc", torch.tanh(self.proj(user)), candidates)
        return (torch.softmax(match, dim=-1) * scores).sum(-1)
