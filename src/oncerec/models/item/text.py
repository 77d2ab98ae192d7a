"""Per-field text encoders: word vectors of one text field [B, L, E] + mask -> one vector [B, d].

They differ only in how words are contextualised before pooling; each is the text part of a classic model.
None reads the padded positions (masked out, or zeroed before the CNN's windows), so an item's vector does not
depend on the batch it is encoded in (texts are trimmed to the batch's longest).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from oncerec.config.schema import ModelConfig
from oncerec.models.layers import AdditiveAttention, FastformerLayer, SelfAttention, masked_mean


class WordCNN(nn.Module):
    """A 1-D convolution over words (hidden_size filters, window kernel_size), ReLU: one state per word."""

    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size", "kernel_size", "dropout", "attention_hidden"})

    def __init__(self, cfg: ModelConfig, in_dim: int):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, cfg.hidden_size, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.drop = nn.Dropout(cfg.dropout)

    def states(self, x: Tensor, mask: Tensor) -> Tensor:
        """x [B, L, E], mask [B, L] -> [B, L, hidden_size], dropout applied."""
        # Zero the padded positions: a padding row need not be zero (Hugging Face tables, a width projection)
        # and the batch's width varies, so a window reaching past the text would make the vector batch-dependent.
        x = self.drop(x).masked_fill(~mask.unsqueeze(-1), 0)
        return self.drop(self.conv(x.transpose(1, 2)).transpose(1, 2)[:, : x.shape[1]].relu())


class CNNText(WordCNN):
    """NAML / LSTUR: a 1-D convolution over words, then additive attention."""

    def __init__(self, cfg: ModelConfig, in_dim: int):
        super().__init__(cfg, in_dim)
        self.pool = AdditiveAttention(cfg.hidden_size, cfg.attention_hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.pool(self.states(x, mask), mask)


class AttentionText(nn.Module):
    """NRMS: multi-head self-attention over words, then additive attention."""

    reads: ClassVar[frozenset[str]] = frozenset(
        {"hidden_size", "num_heads", "dropout", "attention_residual", "attention_hidden"}
    )

    def __init__(self, cfg: ModelConfig, in_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, cfg.hidden_size)
        self.attn = SelfAttention(cfg.hidden_size, cfg.num_heads, cfg.dropout, cfg.attention_residual)
        self.drop = nn.Dropout(cfg.dropout)
        self.pool = AdditiveAttention(cfg.hidden_size, cfg.attention_hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.attn(self.proj(self.drop(x)), mask)
        return self.pool(self.drop(h), mask)


class FastformerText(nn.Module):
    """Fastformer: learned positions, a stack of Fastformer layers, additive-attention pooling."""

    reads: ClassVar[frozenset[str]] = frozenset(
        {"hidden_size", "num_heads", "dropout", "num_layers", "attention_hidden"}
    )

    def __init__(self, cfg: ModelConfig, in_dim: int, max_len: int = 512):
        super().__init__()
        self.proj = nn.Linear(in_dim, cfg.hidden_size)
        self.pos = nn.Embedding(max_len, cfg.hidden_size)
        self.layers = nn.ModuleList(
            FastformerLayer(cfg.hidden_size, cfg.num_heads, cfg.dropout) for _ in range(cfg.num_layers)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.pool = AdditiveAttention(cfg.hidden_size, cfg.attention_hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.proj(self.drop(x)) + self.pos.weight[: x.shape[1]]
        for layer in self.layers:
            h = layer(h, mask)
        return self.pool(h, mask)


class PoolText(nn.Module):
    """Masked mean of the word vectors, projected: the simplest text encoder (and a strong CTR input)."""

    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size", "dropout"})

    def __init__(self, cfg: ModelConfig, in_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, cfg.hidden_size)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.proj(self.drop(masked_mean(x, mask)))
