"""An item-id embedding: no content at all (the classic CTR baseline)."""

from __future__ import annotations

from torch import Tensor, nn

from oncerec.models.config import ModelConfig
from oncerec.models.interfaces import ComponentConfig, ItemEncoder, ModelSpec
from oncerec.models.registry import register


@register("item", "id")
class IdItemEncoder(ItemEncoder):
    """An item-id embedding, hidden_size wide: no content at all."""

    own_inputs = True

    def __init__(self, cfg: ComponentConfig, model: ModelConfig, words: nn.Module | None, spec: ModelSpec):
        super().__init__()
        self.emb = nn.Embedding(spec.num_items, model.hidden_size, padding_idx=0)

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        return self.emb(content["item"])
