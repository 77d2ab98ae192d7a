"""The word-embedding table shared by the text fields of an item encoder (`embed=` config group).

`random`: N(0, 1), PyTorch's own default (smaller tables kept dot-product models longer on their initial
plateau); `glove`: vectors read from a local GloVe-format text file for the dataset's word
vocabulary; `hf`: the token-embedding matrix of a local Hugging Face model (its tokenizer's ids). A table whose
width differs from `embed.dim` is followed by a linear projection to `embed.dim`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from oncerec.config.schema import EmbedConfig
from oncerec.data.mind import vector_row
from oncerec.errors import ConfigError, DataError


class WordEmbedding(nn.Module):
    def __init__(self, weight: Tensor, freeze: bool, dim: int, pretrained: bool):
        super().__init__()
        self.table = nn.Embedding.from_pretrained(weight, freeze=freeze, padding_idx=0)
        self.proj = nn.Linear(weight.shape[1], dim) if weight.shape[1] != dim else nn.Identity()
        self.dim = dim
        # Pretrained language-model weights train with exp.item_lr; a word table of our own with exp.embed_lr.
        self.table.weight.lr_group = "item" if pretrained else "embed"

    def forward(self, ids: Tensor) -> Tensor:
        return self.proj(self.table(ids))


def read_glove(path: Path, vocab: list[str], rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Vectors for `vocab` (row 0 stays zero); words absent from the file keep a random vector."""
    index = {w: i for i, w in enumerate(vocab)}
    table: np.ndarray | None = None
    found = 0
    n = 0
    try:
        with open(path, encoding="utf-8-sig", errors="strict") as f:  # -sig: drop a byte-order mark
            for n, line in enumerate(f, 1):
                word, _, rest = line.rstrip("\n").rstrip("\r").partition(" ")
                if table is None:
                    dim = len(rest.split(" "))
                    table = rng.normal(0, 0.1, (len(vocab), dim)).astype(np.float32)
                    table[0] = 0
                i = index.get(word)
                if i is None:
                    continue
                values = rest.split(" ")
                if len(values) != table.shape[1]:
                    raise DataError(
                        path, f"expected {table.shape[1]} numbers after the word, got {len(values)}", n
                    )
                table[i] = vector_row(values, path, n, f"word {word!r}")
                found += 1
    except UnicodeDecodeError as e:
        raise DataError(path, f"not valid UTF-8 (byte {e.start} of the line)", n + 1) from None
    if table is None:
        raise DataError(path, "file is empty")
    return table, found


def build_word_embedding(
    cfg: EmbedConfig,
    vocab: list[str] | None,
    vocab_size: int,
    seed: int,
    log=print,
    weight: Tensor | None = None,
) -> WordEmbedding:
    """`weight`: the table itself (a served export holds its trained table), so no file or model is read."""
    if weight is not None:
        return WordEmbedding(weight, cfg.freeze, cfg.dim, pretrained=cfg.type == "hf")
    rng = np.random.default_rng(seed)
    if cfg.type == "random":
        weight = rng.normal(0, 1.0, (vocab_size, cfg.dim)).astype(np.float32)
        weight[0] = 0
        return WordEmbedding(torch.from_numpy(weight), cfg.freeze, cfg.dim, pretrained=False)
    if cfg.type == "glove":
        if not cfg.path or not Path(cfg.path).is_file():
            raise ConfigError(f"embed.type=glove needs embed.path=<GloVe text file>; got {cfg.path!r}")
        if vocab is None:
            raise ConfigError("embed.type=glove indexes the `word` tokenizer: set embed.tokenizer=word")
        weight, found = read_glove(Path(cfg.path), vocab, rng)
        log(f"glove: {found:,} of {len(vocab) - 2:,} words found in {cfg.path}")
        return WordEmbedding(torch.from_numpy(weight), cfg.freeze, cfg.dim, pretrained=False)
    from oncerec.lm.backbone import load_base_model

    model = load_base_model(cfg.path)
    weight = model.get_input_embeddings().weight.detach().float().clone()
    if weight.shape[0] < vocab_size:
        raise ConfigError(
            f"embed.path={cfg.path} has {weight.shape[0]} token embeddings but tokenizer "
            f"`{cfg.tokenizer}` has {vocab_size} ids: use the model's own tokenizer"
        )
    return WordEmbedding(weight, cfg.freeze, cfg.dim, pretrained=True)
