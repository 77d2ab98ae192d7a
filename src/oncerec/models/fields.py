"""The item encoder of fields: one text encoder per text field, an embedding per categorical field, and
additive attention over the field vectors when there are several (NAML's "attentive multi-view" design).

Every word-level item encoder of the registry (`cnn`, `attention`, `fastformer`, `pool`) is this class with its
own per-field text encoder, `text_encoder(cfg, model, in_dim)`: word vectors of one text field [B, L, E] + mask
-> one vector [B, hidden_size]. None reads the padded positions (masked out, or zeroed before a CNN's windows),
so an item's vector does not depend on the batch it is encoded in (texts are trimmed to the batch's longest).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oncerec.models.config import ModelConfig
from oncerec.models.interfaces import ComponentConfig, ItemEncoder, ModelSpec
from oncerec.models.layers import AdditiveAttention


class FieldItemEncoder(ItemEncoder):
    text_encoder: type[nn.Module]  # set by each registered subclass

    def __init__(self, cfg: ComponentConfig, model: ModelConfig, words: nn.Module, spec: ModelSpec):
        super().__init__()
        self.words = words
        self.text_fields = model.text_item_fields
        self.cat_fields = [f for f in model.item_fields if f not in self.text_fields]
        self.text = nn.ModuleDict({f: self.text_encoder(cfg, model, words.dim) for f in self.text_fields})
        self.cats = nn.ModuleDict(
            {
                f: nn.Sequential(
                    nn.Embedding(spec.vocab_sizes[f], model.category_dim, padding_idx=0),
                    nn.Linear(model.category_dim, model.hidden_size),
                    nn.ReLU(),
                )
                for f in self.cat_fields
            }
        )
        self.fuse = (
            AdditiveAttention(model.hidden_size, model.attention_hidden)
            if len(model.item_fields) > 1
            else None
        )

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        views = [self.text[f](self.words(content[f]), content[f"{f}_mask"]) for f in self.text_fields]
        views += [self.cats[f](content[f]) for f in self.cat_fields]
        if self.fuse is None:
            return views[0]
        stacked = torch.stack(views, dim=1)
        return self.fuse(stacked, torch.ones(stacked.shape[:2], dtype=torch.bool, device=stacked.device))
