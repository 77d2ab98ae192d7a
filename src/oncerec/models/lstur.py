"""LSTUR's user encoder (An et al., 2019): a GRU over clicked items (short-term interest) and a user-id
embedding (long-term), either initialising the GRU state (`ini`) or concatenated with its output and projected
(`con`). LSTUR's item encoder is NAML's CNN (`cnn`, models/naml.py).

A user with no training impression is the unknown user 0 (a zero embedding, see `UserEmbedding`).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from oncerec.models.config import ModelConfig
from oncerec.models.interfaces import ComponentConfig, ModelSpec, UserEncoder
from oncerec.models.layers import UserEmbedding
from oncerec.models.registry import register


class GRUConfig(ComponentConfig):
    """User encoder `gru` (LSTUR)."""

    gru_mode: Literal["ini", "con"] = Field(
        "ini", description="The user-id embedding initialises the GRU (`ini`) or is concatenated (`con`)."
    )
    user_id_dropout: float = Field(0.5, ge=0, le=1, description="Chance of masking the user-id embedding.")


@register("user", "gru")
class GRUUser(UserEncoder):
    config_class = GRUConfig

    def __init__(self, cfg: GRUConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.mode = cfg.gru_mode
        self.user_emb = UserEmbedding(spec.train_users, model.hidden_size)
        self.id_dropout = cfg.user_id_dropout
        self.gru = nn.GRU(model.hidden_size, model.hidden_size, batch_first=True)
        self.out = nn.Linear(2 * model.hidden_size, model.hidden_size) if self.mode == "con" else None

    def knows(self, user: int) -> bool:
        return bool(self.user_emb.train_users[user])

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        long_term = self.user_emb(user)
        if self.training and self.id_dropout:
            # LSTUR masks the whole user embedding at random, so the model also learns to serve unseen users.
            keep = torch.rand(user.shape[0], 1, device=user.device) >= self.id_dropout
            long_term = long_term * keep
        lengths = mask.sum(1)
        h0 = long_term.unsqueeze(0) if self.mode == "ini" else None
        packed = nn.utils.rnn.pack_padded_sequence(
            clicked, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, h = self.gru(packed, h0)
        short_term = torch.where((lengths > 0).unsqueeze(-1), h[-1], long_term)
        if self.mode == "ini":
            return short_term
        return self.out(torch.cat([short_term, long_term], dim=-1))
