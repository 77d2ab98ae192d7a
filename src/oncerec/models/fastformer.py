"""Fastformer (Wu et al., 2021): learned positions, a stack of Fastformer layers (additive attention, linear in
the sequence length) and additive-attention pooling, over a text's words (item encoder `fastformer`) and over
the clicked items (user encoder `fastformer`)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from oncerec.models.config import ModelConfig
from oncerec.models.fields import FieldItemEncoder
from oncerec.models.interfaces import ComponentConfig, ModelSpec, UserEncoder
from oncerec.models.layers import AdditiveAttention, FastformerLayer
from oncerec.models.registry import register


class FastformerConfig(ComponentConfig):
    """A Fastformer stack (item encoder `fastformer` over words, user encoder `fastformer` over clicks),
    `model.num_heads` heads of `model.hidden_size`."""

    num_layers: int = Field(2, ge=1, description="Fastformer layers.")

    def check(self, model: ModelConfig) -> None:
        model.check_heads("Fastformer")


def _layers(cfg: FastformerConfig, model: ModelConfig) -> nn.ModuleList:
    return nn.ModuleList(
        FastformerLayer(model.hidden_size, model.num_heads, model.dropout) for _ in range(cfg.num_layers)
    )


class FastformerText(nn.Module):
    def __init__(self, cfg: FastformerConfig, model: ModelConfig, in_dim: int, max_len: int = 512):
        super().__init__()
        self.proj = nn.Linear(in_dim, model.hidden_size)
        self.pos = nn.Embedding(max_len, model.hidden_size)
        self.layers = _layers(cfg, model)
        self.drop = nn.Dropout(model.dropout)
        self.pool = AdditiveAttention(model.hidden_size, model.attention_hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.proj(self.drop(x)) + self.pos.weight[: x.shape[1]]
        for layer in self.layers:
            h = layer(h, mask)
        return self.pool(h, mask)


@register("item", "fastformer")
class FastformerItemEncoder(FieldItemEncoder):
    config_class = FastformerConfig
    text_encoder = FastformerText


@register("user", "fastformer")
class FastformerUser(UserEncoder):
    config_class = FastformerConfig

    def __init__(self, cfg: FastformerConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.pos = nn.Embedding(spec.history_len, model.hidden_size)
        self.layers = _layers(cfg, model)
        self.pool = AdditiveAttention(model.hidden_size, model.attention_hidden)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        h = clicked + self.pos.weight[: clicked.shape[1]]
        for layer in self.layers:
            h = layer(h, mask)
        return self.pool(h, mask)
