"""The word-embedding table shared by the text fields of an item encoder (`embed=` config group), given its
weights (read by `data/word_vectors.py`: random, GloVe or a language model's token embeddings). A table whose
width differs from `embed.dim` is followed by a linear projection to `embed.dim`.
"""

from __future__ import annotations

from torch import Tensor, nn


class WordEmbedding(nn.Module):
    def __init__(self, weight: Tensor, freeze: bool, dim: int, pretrained: bool):
        super().__init__()
        self.table = nn.Embedding.from_pretrained(weight, freeze=freeze, padding_idx=0)
        self.proj = nn.Linear(weight.shape[1], dim) if weight.shape[1] != dim else nn.Identity()
        self.dim = dim
        # Pretrained language-model weights train with exp.item_lr; a word table of our own with exp.embed_lr
        # (the projection, being ours and dense, with exp.lr).
        self.rate_group = "item" if pretrained else "embed"

    def rate_groups(self) -> dict[str, list[nn.Parameter]]:
        return {self.rate_group: [self.table.weight]} if self.table.weight.requires_grad else {}

    def forward(self, ids: Tensor) -> Tensor:
        return self.proj(self.table(ids))
