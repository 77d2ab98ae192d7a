"""The one registry: config names -> component classes. Each class registers itself beside its definition
(`@register("item", "cnn")`) and declares the ModelConfig fields it reads (`reads`, see `check_knobs` in
models/recommender.py). Every class of a kind has the same constructor.

item encoders:  cls(cfg: ModelConfig, words: WordEmbedding | None, spec: dict); a class with
                `own_inputs = True` gets no word table and gathers its own inputs by item index
user encoders:  cls(cfg: ModelConfig, spec: dict)
predictors:     cls(cfg: ModelConfig, spec: dict)

A predictor with `pointwise = True` (the CTR models) is trained with binary cross-entropy under exp.loss=auto.
A user encoder with `gives_sequence = True` (`sequence`) pairs only with a predictor with
`takes_sequence = True` (`din`); the Recommender checks this.
"""

from __future__ import annotations

from collections.abc import Callable

from oncerec.errors import ConfigError

KINDS = ("item", "user", "predictor")  # the ModelConfig field that names each kind's component
REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator: `@register("user", "gru")` makes the class the component `model.user=gru`."""

    def add(cls: type) -> type:
        if name in REGISTRY[kind]:
            raise ValueError(f"{kind} component `{name}` is registered twice")
        REGISTRY[kind][name] = cls
        return cls

    return add


def lookup(kind: str, name: str) -> type:
    table = REGISTRY[kind]
    if name not in table:
        raise ConfigError(f"model.{kind}={name}: unknown {kind} component; valid: {', '.join(sorted(table))}")
    return table[name]


# Every component module, named here rather than found by globbing, so that importing the registry registers
# them all. Last, because each of them imports `register` from this module.
from oncerec.models.item import fields, lm  # noqa: E402, F401
from oncerec.models.predictors import ctr, dot  # noqa: E402, F401
from oncerec.models.user import attention, fastformer, gru, pool, sequence  # noqa: E402, F401
