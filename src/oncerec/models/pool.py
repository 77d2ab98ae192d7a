"""Mean pooling, the simplest encoders: of an item's words (item encoder `pool`, a strong CTR input) and of
the clicked-item vectors (user encoder `pool`, the baseline)."""

from __future__ import annotations

from torch import Tensor, nn

from oncerec.models.config import ModelConfig
from oncerec.models.fields import FieldItemEncoder
from oncerec.models.interfaces import ComponentConfig, ModelSpec, UserEncoder
from oncerec.models.layers import masked_mean
from oncerec.models.registry import register


class PoolText(nn.Module):
    """Masked mean of the word vectors, projected."""

    def __init__(self, cfg: ComponentConfig, model: ModelConfig, in_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, model.hidden_size)
        self.drop = nn.Dropout(model.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.proj(self.drop(masked_mean(x, mask)))


@register("item", "pool")
class PoolItemEncoder(FieldItemEncoder):
    """The mean of each text field's word vectors, projected; the fields fused by attention."""

    text_encoder = PoolText


@register("user", "pool")
class PoolUser(UserEncoder):
    """The mean of the clicked-item vectors."""

    def __init__(self, cfg: ComponentConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return masked_mean(clicked, mask)
