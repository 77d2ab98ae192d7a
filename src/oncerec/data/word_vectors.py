"""The weights of a word-embedding table for a dataset's vocabulary (`embed=` config group).

`random`: N(0, 1), PyTorch's own default (smaller tables kept dot-product models longer on their initial
plateau); `glove`: vectors read from a local GloVe-format text file for the dataset's word
vocabulary; `hf`: the token-embedding matrix of a local Hugging Face model (its tokenizer's ids).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from oncerec.config.schema import EmbedConfig
from oncerec.data.dataset import Dataset
from oncerec.data.formats.mind import vector_row
from oncerec.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


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


def word_table(cfg: EmbedConfig, dataset: Dataset, seed: int) -> Tensor:
    """The table's initial weights [vocabulary size of `embed.tokenizer`, width]; row 0 (padding) zero."""
    vocab = dataset.vocab("word") if cfg.tokenizer == "word" else None
    vocab_size = dataset.vocab_size(cfg.tokenizer)
    rng = np.random.default_rng(seed)
    if cfg.type == "random":
        weight = rng.normal(0, 1.0, (vocab_size, cfg.dim)).astype(np.float32)
        weight[0] = 0
        return torch.from_numpy(weight)
    if cfg.type == "glove":
        if not cfg.path or not Path(cfg.path).is_file():
            raise ConfigError(f"embed.type=glove needs embed.path=<GloVe text file>; got {cfg.path!r}")
        if vocab is None:
            raise ConfigError("embed.type=glove indexes the `word` tokenizer: set embed.tokenizer=word")
        weight, found = read_glove(Path(cfg.path), vocab, rng)
        logger.info(f"glove: {found:,} of {len(vocab) - 2:,} words found in {cfg.path}")
        return torch.from_numpy(weight)
    from oncerec.lm.backbone import load_base_model

    model = load_base_model(cfg.path)
    weight = model.get_input_embeddings().weight.detach().float().clone()
    if weight.shape[0] < vocab_size:
        raise ConfigError(
            f"embed.path={cfg.path} has {weight.shape[0]} token embeddings but tokenizer "
            f"`{cfg.tokenizer}` has {vocab_size} ids: use the model's own tokenizer"
        )
    return weight
