"""The three kinds of component the Recommender composes, what each may declare about itself, and the base of
their configs.

Every registered component subclasses one of these (`register` checks it) and names its config class
(`config_class`, a `ComponentConfig`: the keys under `model.item`, `model.user` or `model.predictor`). A
capability is a declared class attribute or an overridden method here, with its default, so that the
Recommender, the trainer and the server ask the component instead of probing it for attributes it may not have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

if TYPE_CHECKING:
    from oncerec.models.config import ModelConfig

# What a representation is, for the check that each component takes what the one before it gives (the
# schema's, `models/config.py`): a vector, or one of the packed forms that only particular partners read.
VECTOR = "a vector"
SEQUENCE = "the click sequence (packed)"  # `sequence` -> a target-attention predictor (din, dkn, bst)
WORD_STATES = "word states (packed)"  # NPA's item encoder -> NPA's user encoder
VECTOR_AND_WORD_QUERY = "a vector and a word-attention query"  # NPA's user encoder -> NPA's predictor


class ComponentConfig(BaseModel):
    """A component's own keys. Each registered component names a subclass of this as its `config_class`, in its
    own module, with a typed, described field per key; this base holds only the name the component was chosen
    by, and is the config of a component without keys. A key the class does not have is an error."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    name: str = Field(frozen=True, description="The component's registry name.")

    def check(self, model: ModelConfig) -> None:
        """What the schema checks of this component against the model-wide keys (`model.hidden_size`,
        `model.item_fields`, ...): raise ValueError naming the keys and the fix. Default: nothing."""


@dataclass
class ModelSpec:
    """What the components are given of the data: sizes and tensors, never a file or a dataset. The data side
    (`training/build.py`) reads them; a component takes the ones it needs."""

    num_items: int
    train_users: np.ndarray  # [users] bool: the users with a training impression (user embeddings)
    history_len: int
    vocab_sizes: dict[str, int]  # categorical field (category, subcategory) -> its number of values
    # the longest text of each text field over the dataset's tokenizers (NPA packs word states this wide)
    text_widths: dict[str, int] = field(default_factory=dict)
    entity_vectors: np.ndarray | None = None  # [E, D] title-entity vectors (DKN), when the encoder reads them
    # A language-model item encoder's inputs by item index: rows -> (token ids or cached states, mask), and
    # the model (loaded, its cache checked against it); see `training/build.py`
    item_inputs: Callable[[np.ndarray], tuple[Tensor, Tensor]] | None = None
    lm: nn.Module | None = None
    # GENRE user profiles: name -> ([num_users, K] value ids, [num_users, K] weights, number of values)
    user_attributes: dict[str, tuple[np.ndarray, np.ndarray, int]] = field(default_factory=dict)


@dataclass
class Batch:
    """What a recommender trains on: `history` [B, H] item indices (0 = padding) with `history_mask`; `user`
    [B]; `candidates` [B, K] item indices with `candidate_mask` (False = padding); `labels` [B, K] (training:
    the click is column 0). Made by the data side (`data.batching`)."""

    history: Tensor
    history_mask: Tensor
    user: Tensor
    candidates: Tensor
    candidate_mask: Tensor
    labels: Tensor

    def to(self, device) -> Batch:
        return Batch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


class ItemTable(Protocol):
    """The content of every item, gathered by index (the data side's `data.batching.ItemContent`): kept out
    of the model's state, as it is data."""

    def gather(self, items: Tensor) -> dict[str, Tensor]: ...

    def lookup(self, field: str, items: Tensor) -> Tensor: ...


class ItemEncoder(nn.Module):
    """`forward(content: dict[str, Tensor]) -> item vectors [N, d]`, the content gathered by item index
    (an `ItemTable`). Constructor: `(cfg: its config_class, model: ModelConfig, words: WordEmbedding | None,
    spec: ModelSpec)`: its own keys, the model-wide ones, the word table, the data's sizes."""

    config_class: ClassVar[type[ComponentConfig]] = ComponentConfig
    # True: it gathers its own inputs by item index (ids, language-model tokens, DIRE states) and gets no
    # word table
    own_inputs: ClassVar[bool] = False
    reads_entities: ClassVar[bool] = False  # True: its content also holds each title word's entity (DKN)
    # True: it runs a pretrained language model over the item text (DIRE), given as `spec.lm` with its
    # inputs by item index, `spec.item_inputs`
    language_model: ClassVar[bool] = False
    gives: ClassVar[str] = VECTOR  # what it gives the user encoder and the predictor (per item)

    def rate_groups(self) -> dict[str, list[nn.Parameter]]:
        """Its parameters that learn at a rate of their own, by group: `item` (exp.item_lr) for pretrained
        language-model weights. Its word table's group is the table's own (`WordEmbedding.rate_group`); the
        rest learn at exp.lr. Default: none."""
        return {}


class UserEncoder(nn.Module):
    """`forward(clicked [B, H, f], mask [B, H], user [B]) -> user representations`, where `clicked` holds
    `per_item` of each clicked item's vector. Constructor: `(cfg: its config_class, model: ModelConfig, spec:
    ModelSpec)`."""

    config_class: ClassVar[type[ComponentConfig]] = ComponentConfig
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
    `(cfg: its config_class, model: ModelConfig, spec: ModelSpec)`."""

    config_class: ClassVar[type[ComponentConfig]] = ComponentConfig
    # True: one logit per candidate (the CTR heads), trained with binary cross-entropy under exp.loss=auto
    pointwise: ClassVar[bool] = False
    takes: ClassVar[str] = VECTOR  # the user representation it scores (the user encoder's `gives`)
    reads_categories: bool = False  # as for user encoders: forward also takes the candidates' `categories`

    def regularization(self) -> Tensor:
        """A weighted term of the last training forward to add to the loss (default: none)."""
        return torch.zeros(())


KIND_BASES: dict[str, type[nn.Module]] = {"item": ItemEncoder, "user": UserEncoder, "predictor": Predictor}
