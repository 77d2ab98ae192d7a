"""Building blocks shared by components of several models."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F


def any_valid(mask: Tensor) -> Tensor:
    """[B, L] bool -> [B, 1] float: 0 for rows with nothing to attend to (padding item, empty history)."""
    return mask.any(dim=-1, keepdim=True).to(torch.get_default_dtype())


def attendable(mask: Tensor) -> Tensor:
    """A mask with position 0 opened in empty rows, so softmax never sees a row of -inf (their output is
    zeroed afterwards with `any_valid`)."""
    empty = ~mask.any(dim=-1)
    if empty.any():
        mask = mask.clone()
        mask[empty, 0] = True
    return mask


class AdditiveAttention(nn.Module):
    """Pools a sequence into one vector: softmax(q . tanh(W x_i)) weighted sum (Bahdanau-style)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.query = nn.Linear(hidden, 1, bias=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x [B, L, D], mask [B, L] (True = real) -> [B, D]."""
        logits = self.query(torch.tanh(self.proj(x))).squeeze(-1)
        logits = logits.masked_fill(~attendable(mask), float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        return torch.einsum("bl,bld->bd", weights, x) * any_valid(mask).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention over a padded sequence (NRMS); `residual` adds the input to the output.

    Split in two so that inference can do the per-item half once per item: `project` (each position's query,
    key and value, and its input when `residual`) and `attend` (the positions meet). The weights are an
    `nn.MultiheadAttention`'s and the arithmetic is its own, in its order and memory layout, so that training
    gives bit for bit what that module gives (tests/test_models.py holds both to it)."""

    def __init__(self, dim: int, heads: int, dropout: float, residual: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_size {dim} must be divisible by num_heads {heads}")
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.dim, self.heads, self.residual = dim, heads, residual

    def project(self, x: Tensor) -> Tensor:
        """x [..., D] -> [..., 3D] (queries, keys, values), [..., 4D] with the input appended when `residual`."""
        w, b = self.attn.in_proj_weight, self.attn.in_proj_bias
        # a sequence [B, L, D] is projected position-major, as nn.MultiheadAttention does
        qkv = F.linear(x.transpose(0, 1), w, b).transpose(0, 1) if x.dim() == 3 else F.linear(x, w, b)
        return torch.cat([qkv, x], -1) if self.residual else qkv

    def attend(self, projected: Tensor, mask: Tensor) -> Tensor:
        """`project`ed positions [B, L, 3D or 4D], mask [B, L] -> outputs [B, L, D]."""
        (b, n), d, h = mask.shape, self.dim, self.heads
        qkv = projected[..., : 3 * d].transpose(0, 1).unflatten(-1, (3, d))  # [L, B, 3, D]
        q, k, v = (
            t.reshape(n, b * h, d // h).transpose(0, 1).view(b, h, n, d // h)
            for t in qkv.unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()
        )
        ignored = torch.zeros(b, n, dtype=q.dtype, device=q.device).masked_fill(
            ~attendable(mask), float("-inf")
        )
        ignored = ignored.view(b, 1, 1, n).expand(-1, h, -1, -1).reshape(b * h, 1, n).view(b, h, 1, n)
        dropout = self.attn.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, ignored, dropout)
        out = self.attn.out_proj(out.permute(2, 0, 1, 3).reshape(n * b, d)).view(n, b, d).transpose(0, 1)
        return projected[..., 3 * d :] + out if self.residual else out

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.attend(self.project(x), mask)


class FastformerLayer(nn.Module):
    """One Fastformer layer (Wu et al., 2021): additive attention builds a global query and key, which modulate
    the keys and values element-wise; linear in sequence length. Post-norm residual + feed-forward."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_size {dim} must be divisible by num_heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_score = nn.Linear(dim, heads)
        self.k_score = nn.Linear(dim, heads)
        self.out = nn.Linear(dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def _pool(self, x: Tensor, scores: Tensor, mask: Tensor) -> Tensor:
        """x [B, L, D], scores [B, L, H] -> one vector per head, [B, 1, D]."""
        scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf")) / self.head_dim**0.5
        w = torch.softmax(scores, dim=1)  # [B, L, H]
        b, n, _ = x.shape
        pooled = torch.einsum("blh,blhd->bhd", w, x.view(b, n, self.heads, self.head_dim))
        return pooled.reshape(b, 1, -1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        mask = attendable(mask)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        global_q = self._pool(q, self.q_score(q), mask)
        p = global_q * k
        global_k = self._pool(p, self.k_score(p), mask)
        attended = self.out(global_k * v) + q
        x = self.norm1(x + self.drop(attended))
        return self.norm2(x + self.drop(self.ff(x)))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


class UserEmbedding(nn.Embedding):
    """A user-id embedding (LSTUR, NPA). A user without a training impression is the unknown user 0, a zero
    row, as in LSTUR and Microsoft Recommenders: the user index spans every split, so that user's own row
    never trained."""

    def __init__(self, train_users: np.ndarray, dim: int):
        super().__init__(len(train_users), dim, padding_idx=0)
        # Data, not state (like ItemContent): off the state dict and DDP's broadcasts, moved on first use.
        self.train_users = torch.from_numpy(train_users)

    def forward(self, user: Tensor) -> Tensor:
        if self.train_users.device != user.device:
            self.train_users = self.train_users.to(user.device)
        return super().forward(torch.where(self.train_users[user], user, 0))
