"""DKN's knowledge-aware CNN (KCNN, Wang et al., 2018) over the title's words and their entities."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from oncerec.config.schema import ModelConfig
from oncerec.errors import ConfigError
from oncerec.models.interfaces import ItemEncoder, ModelSpec
from oncerec.models.layers import any_valid, attendable
from oncerec.models.registry import register


@register("item", "kcnn")
class KCNNItemEncoder(ItemEncoder):
    """Each title word w_i has its entity e_i (0: none; `prepare` aligns MIND's title_entities with the
    words). The entity's pretrained vector (entity_embedding.vec, fixed, as the paper's TransE vectors) is
    mapped to the word space, g(e) = tanh(M e + b), and stacked with the word as a second channel aligned
    with it: W = [[w_1, g(e_1)], ..., [w_n, g(e_n)]]. For each window size l (`window_sizes`),
    hidden_size / len(window_sizes) filters h give c_i = ReLU(h * W_{i:i+l-1} + b), max-pooled over i; the
    window sizes' features are concatenated.

    A word without an entity has a zero entity channel. Windows start at every word and read zeros past the
    text's end, so a title shorter than l still has one window and a vector never depends on its batch. The
    paper's third channel, the mean of an entity's neighbours in the knowledge graph, needs the graph's
    triples, which MIND does not ship: it is left out."""

    reads_entities = True  # the Recommender then gathers `title_entities`
    reads: ClassVar[frozenset[str]] = frozenset({"item_fields", "hidden_size", "window_sizes", "dropout"})

    def __init__(self, cfg: ModelConfig, words: nn.Module, spec: ModelSpec):
        super().__init__()
        if cfg.item_fields != ["title"]:
            raise ConfigError(
                f"model.item=kcnn (DKN) reads the title and its entities: set model.item_fields=[title] "
                f"(got {cfg.item_fields})"
            )
        filters, rest = divmod(cfg.hidden_size, len(cfg.window_sizes))
        if rest or not filters:
            raise ConfigError(
                f"model.item=kcnn: model.hidden_size {cfg.hidden_size} must be a multiple of the number of "
                f"model.window_sizes ({len(cfg.window_sizes)})"
            )
        table = spec.entity_vectors
        if table is None or not table.any():
            raise ConfigError(
                "model.item=kcnn (DKN) needs entity vectors: the dataset has no title entity with a vector "
                "(MIND's news.tsv title_entities and each split's entity_embedding.vec; the demo data has both)"
            )
        self.words = words
        self.entities = nn.Embedding.from_pretrained(torch.from_numpy(table), freeze=True, padding_idx=0)
        self.transform = nn.Sequential(nn.Linear(table.shape[1], words.dim), nn.Tanh())
        self.convs = nn.ModuleList(nn.Conv1d(2 * words.dim, filters, size) for size in cfg.window_sizes)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        ids, mask, entities = content["title"], content["title_mask"], content["title_entities"]
        g = self.transform(self.entities(entities)) * (entities > 0).unsqueeze(-1)
        x = torch.cat([self.words(ids), g], dim=-1)
        x = self.drop(x).masked_fill(~mask.unsqueeze(-1), 0).transpose(1, 2)  # [N, 2 * E, L]
        start = attendable(mask).unsqueeze(1)  # windows starting at a word (an empty text: one, zeroed below)
        pooled = [
            conv(F.pad(x, (0, conv.kernel_size[0] - 1))).relu().masked_fill(~start, float("-inf")).amax(-1)
            for conv in self.convs
        ]
        return torch.cat(pooled, dim=-1) * any_valid(mask).to(x.dtype)
