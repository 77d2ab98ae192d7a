"""NRMS (Wu et al., 2019): multi-head self-attention over a title's words, then additive attention (item
encoder `attention`); the same over the clicked items (user encoder `self_attention`)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from oncerec.models.config import ModelConfig
from oncerec.models.fields import FieldItemEncoder
from oncerec.models.interfaces import ComponentConfig, ModelSpec, UserEncoder
from oncerec.models.layers import AdditiveAttention, SelfAttention
from oncerec.models.registry import register


class SelfAttentionConfig(ComponentConfig):
    """NRMS's multi-head self-attention (item encoder `attention` over words, user encoder `self_attention`
    over clicks), `model.num_heads` heads of `model.hidden_size`."""

    attention_residual: bool = Field(
        False,
        description="Add the self-attention's input to its output, a Transformer residual connection that the "
        "published NRMS does not have.",
    )

    def check(self, model: ModelConfig) -> None:
        model.check_heads("self-attention")


class AttentionText(nn.Module):
    """Multi-head self-attention over words, then additive attention."""

    def __init__(self, cfg: SelfAttentionConfig, model: ModelConfig, in_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, model.hidden_size)
        self.attn = SelfAttention(model.hidden_size, model.num_heads, model.dropout, cfg.attention_residual)
        self.drop = nn.Dropout(model.dropout)
        self.pool = AdditiveAttention(model.hidden_size, model.attention_hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.attn(self.proj(self.drop(x)), mask)
        return self.pool(self.drop(h), mask)


@register("item", "attention")
class AttentionItemEncoder(FieldItemEncoder):
    config_class = SelfAttentionConfig
    text_encoder = AttentionText


@register("user", "self_attention")
class SelfAttentionUser(UserEncoder):
    """Multi-head self-attention among the clicked items, then additive attention."""

    config_class = SelfAttentionConfig

    def __init__(self, cfg: SelfAttentionConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.attn = SelfAttention(model.hidden_size, model.num_heads, model.dropout, cfg.attention_residual)
        self.drop = nn.Dropout(model.dropout)
        self.pool = AdditiveAttention(model.hidden_size, model.attention_hidden)

    def per_item(self, vectors: Tensor) -> Tensor:
        return self.attn.project(vectors)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        return self.pool(self.drop(self.attn.attend(clicked, mask)), mask)
