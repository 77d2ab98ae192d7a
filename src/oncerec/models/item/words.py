"""NPA's news encoder up to its personalised pooling: the word states of the title, not one vector.

NPA (Wu et al., 2019) pools a title's CNN word states with an attention query made from the *user's* id, for
clicked and candidate news alike. So the item representation is the states themselves (user-independent: each
item is still encoded once, in training and in the fast evaluation) and the pooling happens where the user is
known: the `npa` user encoder pools the clicks, the `npa` predictor the candidates.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oncerec.config.schema import CATEGORICAL, ModelConfig
from oncerec.errors import ConfigError
from oncerec.models.interfaces import WORD_STATES, ItemEncoder, ModelSpec
from oncerec.models.item.text import WordCNN
from oncerec.models.registry import register
from oncerec.models.user.sequence import pack_sequence, unpack_sequence


def attention_keys(cfg: ModelConfig, width: int) -> nn.Module | None:
    """What turns states [..., width] into the keys of NPA's personalised attention: tanh(W v + b)
    (attention_hidden wide) in the additive form, none (the states are their own keys) in the paper's."""
    if cfg.npa_attention == "paper":
        return None
    return nn.Sequential(nn.Linear(width, cfg.attention_hidden), nn.Tanh())


def key_width(cfg: ModelConfig) -> int:
    """The width of a title word's attention key beside its state in the packed form (0: the state itself)."""
    return 0 if cfg.npa_attention == "paper" else cfg.attention_hidden


def unpack_words(packed: Tensor, cfg: ModelConfig) -> tuple[Tensor, Tensor, Tensor]:
    """[..., W * (d + a + 1)] (what `WordStatesItemEncoder` gives) -> word states [..., W, d], their attention
    keys [..., W, a] (the states where a = 0: the paper's form) and the mask [..., W]."""
    d, a = cfg.hidden_size, key_width(cfg)
    both, mask = unpack_sequence(packed.unflatten(-1, (-1, d + a + 1)).flatten(0, -3))
    both, mask = both.view(*packed.shape[:-1], -1, d + a), mask.view(*packed.shape[:-1], -1)
    return both[..., :d], (both[..., d:] if a else both), mask


@register("item", "npa")
class WordStatesItemEncoder(ItemEncoder):
    """The CNN word states c_i of one text field (NPA: the title), their attention keys (additive form) and
    their mask, packed to the dataset's longest text: [N, W * (hidden_size + a + 1)]. A fixed width, so that
    items of different batches concatenate; the keys are user-independent, so they are computed here, once per
    item."""

    gives = WORD_STATES  # pooled by NPA's user encoder and predictor, with the user's query
    reads: ClassVar[frozenset[str]] = frozenset(
        {"item", "item_fields", "hidden_size", "kernel_size", "dropout", "npa_attention", "attention_hidden"}
    )

    def __init__(self, cfg: ModelConfig, words: nn.Module, spec: ModelSpec):
        super().__init__()
        if len(cfg.item_fields) != 1 or cfg.item_fields[0] in CATEGORICAL:
            raise ConfigError(
                f"model.item={cfg.item} reads one text field (NPA: the title); got item_fields {cfg.item_fields}"
            )
        self.field = cfg.item_fields[0]
        self.words = words
        self.cnn = WordCNN(cfg, words.dim)
        self.keys = attention_keys(cfg, cfg.hidden_size)
        self.width = spec.text_widths[self.field]

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        ids, mask = content[self.field], content[f"{self.field}_mask"]
        states = self.cnn.states(self.words(ids), mask)[:, : self.width]
        if self.keys is not None:
            states = torch.cat([states, self.keys(states)], dim=-1)
        return pack_sequence(states, mask[:, : self.width], self.width).flatten(1)
