"""The three kinds of component the Recommender composes, and what each may declare about itself.

Every registered component subclasses one of these (`register` checks it). A capability is a declared class
attribute or an overridden method here, with its default, so that the Recommender, the trainer and the
server ask the component instead of probing it for attributes it may not have.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

# What a representation is, for the check that each component takes what the one before it gives
# (`Recommender.check_pairs`): a vector, or one of the packed forms that only particular partners read.
VECTOR = "a vector"
SEQUENCE = "the click sequence (packed)"  # `sequence` -> a target-attention predictor (din, dkn, bst)
WORD_STATES = "word states (packed)"  # NPA's item encoder -> NPA's user encoder
VECTOR_AND_WORD_KEY = "a vector and a word-attention key"  # NPA's user encoder -> NPA's predictor


class ItemEncoder(nn.Module):
    """`forward(content: dict[str, Tensor]) -> item vectors [N, d]`, the content gathered by item index
    (`data.batching.ItemContent`). Constructor: `(cfg: ModelConfig, words: WordEmbedding | None, spec: dict)`."""

    reads: ClassVar[frozenset[str]] = frozenset()  # the ModelConfig fields it reads (`check_knobs`)
    # True: it gathers its own inputs by item index (ids, language-model tokens, DIRE states) and gets no
    # word table
    own_inputs: ClassVar[bool] = False
    reads_entities: ClassVar[bool] = False  # True: its content also holds each title word's entity (DKN)
    gives: ClassVar[str] = VECTOR  # what it gives the user encoder and the predictor (per item)


class UserEncoder(nn.Module):
    """`forward(clicked [B, H, f], mask [B, H], user [B]) -> user representations`, where `clicked` holds
    `per_item` of each clicked item's vector. Constructor: `(cfg: ModelConfig, spec: dict)`."""

    reads: ClassVar[frozenset[str]] = frozenset()
    takes: ClassVar[str] = VECTOR  # what it takes of each clicked item (the item encoder's `gives`)
    gives: ClassVar[str] = VECTOR  # what its user representation is (the predictor's `takes`)
    # True (set by the instance from its config): forward also takes `categories` [B, H] of the clicks
    reads_categories: bool = False

    def per_item(self, vectors: Tensor) -> Tensor:
        """The work done on each item's vector alone, before the clicked items meet ([..., d] -> [..., f]).
        Inference applies it once to every item and gathers the rows (`Recommender.user_inputs`) instead of
        repeating it for every click of every user. Default: the vector itself."""
        return vectors

    def knows(self, user: int) -> bool:
        """Whether it holds something of this user besides the clicks it is given (a user embedding that
        trained); the server answers a user it does not know and who has no history by popularity."""
        return False


class Predictor(nn.Module):
    """`forward(user representations, candidates [B, K, d]) -> scores [B, K]`. Constructor:
    `(cfg: ModelConfig, spec: dict)`."""

    reads: ClassVar[frozenset[str]] = frozenset()
    # True: one logit per candidate (the CTR heads), trained with binary cross-entropy under exp.loss=auto
    pointwise: ClassVar[bool] = False
    takes: ClassVar[str] = VECTOR  # the user representation it scores (the user encoder's `gives`)
    reads_categories: bool = False  # as for user encoders: forward also takes the candidates' `categories`

    def regularization(self) -> Tensor:
        """A weighted term of the last training forward to add to the loss (default: none)."""
        return torch.zeros(())


KIND_BASES: dict[str, type[nn.Module]] = {"item": ItemEncoder, "user": UserEncoder, "predictor": Predictor}
