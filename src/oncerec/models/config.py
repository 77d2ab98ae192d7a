"""The `model` group of the configuration: the model-wide keys, and the item encoder, user encoder and predictor,
each chosen by name with a config of its own.

Where a key lives is decided by who reads it:

- `model.<key>` (`ModelConfig`): what the recommender or the data side reads (`name`, `item_fields`,
  `user_attributes`, `miner_category_bias`), and the sizes that components of several kinds share with one
  meaning (`hidden_size`, `attention_hidden`, `num_heads`, `category_dim`, `dropout`): one value serves every
  part that has such a size, so that compact sizes (the demo's, an experiment's common block) fit any model.
- `model.item.<key>`, `model.user.<key>`, `model.predictor.<key>`: every other key, in the config class of the
  one component that reads it (its `config_class`, a `ComponentConfig` in the component's own module). A key the
  chosen component does not have is an error naming the component and its keys. A component that needs a key
  of its partner reads it there: NPA's user encoder and predictor read `model.item.npa_attention`, the form of
  the item encoder whose word states they pool (the pair check below makes that encoder NPA's).

A component is chosen by name, `model.user=gru` (a plain string: the component with its defaults), and its keys
are set beneath it, `model.user.gru_mode=con`; a config file may also give the mapping, as a saved run's does:
`user: {name: gru, gru_mode: con, user_id_dropout: 0.5}`.

A model config is validated here, in one place: each key's type and bounds, each component's own checks against
the model-wide keys (`ComponentConfig.check`), that each component takes the representation the one before it
gives, and the conditions of `miner_category_bias` and `user_attributes`. What needs the data or the loaded
language model is checked when the model is built (`training/build.py` and the components): that the item
fields are prepared, that the data has title entities (DKN) or user profiles (`user_attributes`), and that
`model.item.layer` is within the language model's depth.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from oncerec.models.interfaces import VECTOR, ComponentConfig
from oncerec.models.registry import KIND_LABELS, KINDS, REGISTRY

# The categorical item fields (one value per item); every other item field is text.
CATEGORICAL = ("category", "subcategory")

# the component of each kind when none is named
DEFAULTS = {"item": "attention", "user": "attention", "predictor": "dot"}


def choose(kind: str, value: Any) -> ComponentConfig:
    """The config of a `kind` component from its name (`gru`), a mapping of its name and keys (without a name:
    the default component's keys) or a config already made. Errors name the component and its keys."""
    label, table = KIND_LABELS[kind], REGISTRY[kind]
    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, ComponentConfig):
        made = table.get(value.name)
        if made is None or type(value) is not made.config_class:
            raise ValueError(
                f"model.{kind}: a {type(value).__name__} named `{value.name}` is not the config of a registered "
                f"{label}; valid: {', '.join(sorted(table))}"
            )
        return value
    if not isinstance(value, dict):
        raise ValueError(
            f"model.{kind}: give a {label} by name (model.{kind}={DEFAULTS[kind]}) or as a mapping of its name "
            f"and keys, not {value!r:.60}"
        )
    value = {"name": DEFAULTS[kind], **value}
    name = value["name"]
    if name not in table:
        raise ValueError(f"model.{kind}={name}: unknown {label}; valid: {', '.join(sorted(table))}")
    config = table[name].config_class
    try:
        return config.model_validate(value)
    except ValidationError as e:
        raise ValueError("; ".join(_component_error(kind, name, config, x) for x in e.errors())) from None


def _component_error(kind: str, name: str, config: type[ComponentConfig], error: dict) -> str:
    label, key = KIND_LABELS[kind], ".".join(str(p) for p in error["loc"])
    where = f"`model.{kind}.{key}`"
    if error["type"] == "missing":
        return f"{where}: {label} `{name}` needs it"
    if error["type"] != "extra_forbidden":
        return f"{where}: {error['msg']} (got {error.get('input')!r})"
    own = [k for k in config.model_fields if k != "name"]
    text = f"{where}: not a key of {label} `{name}` (" + (
        f"its keys: {', '.join(own)})" if own else "it has no keys of its own)"
    )
    if key in ModelConfig.model_fields:
        return f"{text}; it is a model-wide key: model.{key}"
    owners = [
        f"{KIND_LABELS[k]} `{n}`"
        for k in KINDS
        for n, cls in sorted(REGISTRY[k].items())
        if key in cls.config_class.model_fields
    ]
    return text + (f"; a key of {', '.join(owners)}" if owners else "")


def _component(kind: str, what: str) -> Any:
    return Field(
        DEFAULTS[kind],
        validate_default=True,
        description=f"The {what}, chosen by its registry name. Its own keys go beneath it "
        f"(`model.{kind}.KEY=VALUE`); each {KIND_LABELS[kind]}'s are listed below.",
    )


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field("custom", description="Preset name, used in run directory names.")
    item: SerializeAsAny[ComponentConfig] = _component("item", "item encoder")
    user: SerializeAsAny[ComponentConfig] = _component("user", "user encoder")
    predictor: SerializeAsAny[ComponentConfig] = _component("predictor", "predictor")
    item_fields: list[str] = Field(
        default_factory=lambda: ["title"],
        description="Item inputs the item encoder reads: text fields and/or `category`, `subcategory`.",
    )
    hidden_size: int = Field(256, ge=1, description="Width of item and user vectors.")
    num_heads: int = Field(
        8,
        ge=1,
        description="Attention heads of every multi-head attention (the self-attention and Fastformer encoders "
        "of items and users, BST's transformer).",
    )
    attention_hidden: int = Field(
        200,
        ge=1,
        description="Hidden width of every additive attention (the pooling of words, fields, clicks and "
        "language-model tokens; DIN's activation unit, DKN's attention, the user-attribute fusion).",
    )
    category_dim: int = Field(
        100,
        ge=1,
        description="Width of category / subcategory embeddings (item encoders' category fields, MINER's "
        "category bias) and of the user-attribute embeddings.",
    )
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on word embeddings and encoder outputs.")
    miner_category_bias: bool = Field(
        False,
        description="MINER (user=poly with predictor=target_aware): category-aware attention weighting. Each "
        "context code's attention logit of a clicked item gets the cosine similarity of that item's and the "
        "candidate's category embeddings, so the interest vectors are pooled per candidate (in the predictor).",
    )
    user_attributes: bool = Field(
        False,
        description="GENRE: embed each user's LLM-generated profile (the dataset's user attributes, e.g. "
        "topics and regions, from `oncerec genre merge`) and fuse it into the user vector by additive "
        "attention (models/attributes.py); users without a profile keep the clicks' vector.",
    )

    @field_validator("item", "user", "predictor", mode="before")
    @classmethod
    def _choose(cls, value: Any, info: ValidationInfo) -> ComponentConfig:
        return choose(info.field_name, value)

    @property
    def text_item_fields(self) -> list[str]:
        """The text fields among `item_fields` (tokenized; the others are categorical, one value per item)."""
        return [f for f in self.item_fields if f not in CATEGORICAL]

    def check_heads(self, what: str) -> None:
        """For a component with `num_heads` attention heads over `hidden_size` (`what` names it in the error)."""
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"model.hidden_size {self.hidden_size} must be divisible by model.num_heads {self.num_heads} "
                f"({what})"
            )

    def component(self, kind: str) -> type:
        """The registered class of the chosen `kind` component."""
        return REGISTRY[kind][getattr(self, kind).name]

    @model_validator(mode="after")
    def _parts_fit(self) -> ModelConfig:
        for kind in KINDS:
            getattr(self, kind).check(self)
        for a, b in (("item", "user"), ("user", "predictor")):
            giver, taker = self.component(a), self.component(b)
            if giver.gives != taker.takes:
                takers = sorted(n for n, c in REGISTRY[b].items() if c.takes == giver.gives)
                raise ValueError(
                    f"model.{a}={getattr(self, a).name} with model.{b}={getattr(self, b).name}: the {a} component "
                    f"gives {giver.gives}, the {b} component takes {taker.takes}; {b} components that take "
                    f"{giver.gives}: {', '.join(takers)}"
                )
        if self.miner_category_bias and (self.user.name, self.predictor.name) != ("poly", "target_aware"):
            raise ValueError(
                "model.miner_category_bias=true: MINER's category-aware attention needs model.user=poly with "
                f"model.predictor=target_aware (got {self.user.name}, {self.predictor.name})"
            )
        if self.user_attributes and self.miner_category_bias:
            raise ValueError(
                "model.user_attributes=true with model.miner_category_bias=true: the interest vectors then "
                "depend on the candidate and are pooled in the predictor, so there is no user vector to fuse "
                "a profile into; set model.miner_category_bias=false"
            )
        if self.user_attributes and self.component("user").gives != VECTOR:
            raise ValueError(
                f"model.user_attributes=true with model.user={self.user.name}: the plugin fuses a profile into a "
                f"pooled user vector; the `{self.user.name}` user encoder gives none"
            )
        return self
