"""NPA's news encoder up to its personalised pooling: the word states of the title, not one vector.

NPA (Wu et al., 2019) pools a title's CNN word states with an attention query made from the *user's* id, for
clicked and candidate news alike. So the item representation is the states themselves (user-independent: each
item is still encoded once, in training and in the fast evaluation) and the pooling happens where the user is
known: the `npa` user encoder pools the clicks, the `npa` predictor the candidates.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from oncerec.config.schema import CATEGORICAL, ModelConfig
from oncerec.errors import ConfigError
from oncerec.models.interfaces import WORD_STATES, ItemEncoder, ModelSpec
from oncerec.models.item.text import WordCNN
from oncerec.models.registry import register
from oncerec.models.user.sequence import pack_sequence, unpack_sequence


def unpack_words(packed: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """[..., W * (dim + 1)] (what `WordStatesItemEncoder` gives) -> word states [..., W, dim], mask [..., W]."""
    states, mask = unpack_sequence(packed.unflatten(-1, (-1, dim + 1)).flatten(0, -3))
    return states.view(*packed.shape[:-1], -1, dim), mask.view(*packed.shape[:-1], -1)


@register("item", "npa")
class WordStatesItemEncoder(ItemEncoder):
    """The CNN word states c_i of one text field (NPA: the title) and their mask, packed to the dataset's
    longest text: [N, W * (hidden_size + 1)]. A fixed width, so that items of different batches concatenate."""

    gives = WORD_STATES  # pooled by NPA's user encoder and predictor, with the user's key
    reads: ClassVar[frozenset[str]] = frozenset(
        {"item", "item_fields", "hidden_size", "kernel_size", "dropout"}
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
        self.width = spec.text_widths[self.field]

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        ids, mask = content[self.field], content[f"{self.field}_mask"]
        states = self.cnn.states(self.words(ids), mask)
        return pack_sequence(states[:, : self.width], mask[:, : self.width], self.width).flatten(1)
