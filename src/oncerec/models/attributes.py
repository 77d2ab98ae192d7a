"""The user-attribute plugin (GENRE user profiles): `model.user_attributes=true`.

Each user attribute of the dataset (`oncerec genre merge` writes them: `users/<name>.npy` value ids, most
relevant first, `users/<name>.weight.npy` 1 / rank; e.g. `topic` and `region` for news) is embedded as the
rank-weighted mean of its values' embeddings; the attributes' vectors are concatenated and projected to
`hidden_size`, then fused with the user vector the user encoder made from the clicks by additive attention
over the two. A user without a profile keeps the clicks' vector unchanged (the profile is masked out), so
the plugin can only add information. It works with every pooled user encoder: for several interest
vectors (MINER) the profile is fused into each.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from oncerec.errors import ConfigError
from oncerec.models.config import ModelConfig
from oncerec.models.interfaces import ModelSpec
from oncerec.models.layers import AdditiveAttention


class UserAttributes(nn.Module):
    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        """The schema has checked that the user encoder gives a pooled vector (`models/config.py`); whether the
        dataset has profiles is known here."""
        super().__init__()
        self.names: list[str] = list(spec.user_attributes)
        if not self.names:
            raise ConfigError(
                "model.user_attributes=true: the dataset has no user attributes; give a dataset made by "
                "`oncerec genre merge` from a store with `profile` answers"
            )
        # Data, not state (like ItemContent): kept off the state dict and out of DDP's buffer broadcasts,
        # moved to the model's device on first use.
        self.tables: dict[str, tuple[Tensor, Tensor]] = {}
        self.embed = nn.ModuleDict()
        for name, (ids, weights, size) in spec.user_attributes.items():
            self.tables[name] = (torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(weights))
            self.embed[name] = nn.Embedding(size, cfg.category_dim, padding_idx=0)
        self.proj = nn.Linear(len(self.names) * cfg.category_dim, cfg.hidden_size)
        self.fuse = AdditiveAttention(cfg.hidden_size, cfg.attention_hidden)

    def _table(self, name: str, device: torch.device) -> tuple[Tensor, Tensor]:
        ids, weights = self.tables[name]
        if ids.device != device:
            ids, weights = ids.to(device), weights.to(device)
            self.tables[name] = (ids, weights)
        return ids, weights

    def profile(self, user: Tensor) -> tuple[Tensor, Tensor]:
        """User indices [B] -> profile vectors [B, d] and whether each user has a profile [B]."""
        parts, has = [], torch.zeros(user.shape, dtype=torch.bool, device=user.device)
        for name in self.names:
            ids, weights = self._table(name, user.device)
            i, w = ids[user], weights[user]  # [B, K]
            total = w.sum(-1, keepdim=True)
            vectors = torch.einsum("bk,bkd->bd", w, self.embed[name](i)) / total.clamp(min=1e-9)
            parts.append(vectors)
            has |= total.squeeze(-1) > 0
        return torch.tanh(self.proj(torch.cat(parts, dim=-1))), has

    def forward(self, vectors: Tensor, user: Tensor) -> Tensor:
        """User vectors [B, d] (or [B, C, d]) from the clicks, user indices [B] -> fused vectors, same shape."""
        profile, has = self.profile(user)
        if vectors.dim() == 3:  # several interest vectors: fuse the profile into each
            b, c, d = vectors.shape
            fused = self._fuse(
                vectors.reshape(b * c, d), profile.repeat_interleave(c, 0), has.repeat_interleave(c)
            )
            return fused.view(b, c, d)
        return self._fuse(vectors, profile, has)

    def _fuse(self, vectors: Tensor, profile: Tensor, has: Tensor) -> Tensor:
        stacked = torch.stack([vectors, profile.to(vectors.dtype)], dim=1)  # [B, 2, d]
        mask = torch.stack([torch.ones_like(has), has], dim=1)
        return self.fuse(stacked, mask)
