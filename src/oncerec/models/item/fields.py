"""The item encoder: one text encoder per text field, an embedding per categorical field, and additive
attention over the field vectors when there are several (NAML's "attentive multi-view" design).

Every text item encoder in the registry is this class with a different per-field text encoder; it reads
its own knobs and its text encoder's.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oncerec.config.schema import CATEGORICAL, ModelConfig
from oncerec.models.interfaces import ItemEncoder, ModelSpec
from oncerec.models.item.text import AttentionText, CNNText, FastformerText, PoolText
from oncerec.models.layers import AdditiveAttention
from oncerec.models.registry import register


class FieldItemEncoder(ItemEncoder):
    text_encoder: type[nn.Module]  # set by each registered subclass
    reads: ClassVar[frozenset[str]] = frozenset(
        {"item_fields", "category_dim", "hidden_size", "attention_hidden"}
    )

    def __init__(self, cfg: ModelConfig, words: nn.Module, spec: ModelSpec):
        super().__init__()
        self.words = words
        self.text_fields = [f for f in cfg.item_fields if f not in CATEGORICAL]
        self.cat_fields = [f for f in cfg.item_fields if f in CATEGORICAL]
        self.text = nn.ModuleDict({f: self.text_encoder(cfg, words.dim) for f in self.text_fields})
        self.cats = nn.ModuleDict(
            {
                f: nn.Sequential(
                    nn.Embedding(spec.vocab_sizes[f], cfg.category_dim, padding_idx=0),
                    nn.Linear(cfg.category_dim, cfg.hidden_size),
                    nn.ReLU(),
                )
                for f in self.cat_fields
            }
        )
        self.fuse = (
            AdditiveAttention(cfg.hidden_size, cfg.attention_hidden) if len(cfg.item_fields) > 1 else None
        )

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        views = [self.text[f](self.words(content[f]), content[f"{f}_mask"]) for f in self.text_fields]
        views += [self.cats[f](content[f]) for f in self.cat_fields]
        if self.fuse is None:
            return views[0]
        stacked = torch.stack(views, dim=1)
        return self.fuse(stacked, torch.ones(stacked.shape[:2], dtype=torch.bool, device=stacked.device))


@register("item", "cnn")
class CNNItemEncoder(FieldItemEncoder):
    text_encoder = CNNText
    reads: ClassVar[frozenset[str]] = FieldItemEncoder.reads | CNNText.reads


@register("item", "attention")
class AttentionItemEncoder(FieldItemEncoder):
    text_encoder = AttentionText
    reads: ClassVar[frozenset[str]] = FieldItemEncoder.reads | AttentionText.reads


@register("item", "fastformer")
class FastformerItemEncoder(FieldItemEncoder):
    text_encoder = FastformerText
    reads: ClassVar[frozenset[str]] = FieldItemEncoder.reads | FastformerText.reads


@register("item", "pool")
class PoolItemEncoder(FieldItemEncoder):
    text_encoder = PoolText
    reads: ClassVar[frozenset[str]] = FieldItemEncoder.reads | PoolText.reads


@register("item", "id")
class IdItemEncoder(ItemEncoder):
    """An item-id embedding: no content at all (the classic CTR baseline)."""

    own_inputs = True
    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size"})

    def __init__(self, cfg: ModelConfig, words: nn.Module | None, spec: ModelSpec):
        super().__init__()
        self.emb = nn.Embedding(spec.num_items, cfg.hidden_size, padding_idx=0)

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        return self.emb(content["item"])
