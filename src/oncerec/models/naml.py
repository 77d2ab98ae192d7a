"""NAML (Wu et al., 2019): a CNN over each text field's words pooled by additive attention (item encoder `cnn`,
also LSTUR's), the fields fused by attention (`models/fields.py`); additive attention over the clicked items
(user encoder `attention`)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from oncerec.models.config import ModelConfig
from oncerec.models.fields import FieldItemEncoder
from oncerec.models.interfaces import ComponentConfig, ModelSpec, UserEncoder
from oncerec.models.layers import AdditiveAttention
from oncerec.models.registry import register


class CNNConfig(ComponentConfig):
    """Item encoder `cnn` (NAML, LSTUR): a CNN over each text field's words, pooled by additive attention."""

    kernel_size: int = Field(3, ge=1, description="Window of the CNN over words.")


class WordCNN(nn.Module):
    """A 1-D convolution over words (hidden_size filters, window kernel_size), ReLU: one state per word."""

    def __init__(self, in_dim: int, hidden_size: int, kernel_size: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, hidden_size, kernel_size, padding=kernel_size // 2)
        self.drop = nn.Dropout(dropout)

    def states(self, x: Tensor, mask: Tensor) -> Tensor:
        """x [B, L, E], mask [B, L] -> [B, L, hidden_size], dropout applied."""
        # Zero the padded positions: a padding row need not be zero (Hugging Face tables, a width projection)
        # and the batch's width varies, so a window reaching past the text would make the vector batch-dependent.
        x = self.drop(x).masked_fill(~mask.unsqueeze(-1), 0)
        return self.drop(self.conv(x.transpose(1, 2)).transpose(1, 2)[:, : x.shape[1]].relu())


class CNNText(WordCNN):
    """A 1-D convolution over words, then additive attention."""

    def __init__(self, cfg: CNNConfig, model: ModelConfig, in_dim: int):
        super().__init__(in_dim, model.hidden_size, cfg.kernel_size, model.dropout)
        self.pool = AdditiveAttention(model.hidden_size, model.attention_hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.pool(self.states(x, mask), mask)


@register("item", "cnn")
class CNNItemEncoder(FieldItemEncoder):
    config_class = CNNConfig
    text_encoder = CNNText


@register("user", "attention")
class AdditiveUser(UserEncoder):
    """Additive attention over the clicked items."""

    def __init__(self, cfg: ComponentConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.pool = AdditiveAttention(model.hidden_size, model.attention_hidden)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return self.pool(clicked, mask)
