"""The one registry: config names -> component classes. Each class registers itself beside its definition
(`@register("item", "cnn")`) and declares the ModelConfig fields it reads (`reads`, see `check_knobs` in
models/recommender.py). Every class of a kind has the same constructor.

Each kind's interface (constructor, forward, declared capabilities such as `own_inputs`, `pointwise`, and
what representation it `gives` / `takes`) is its base class in models/interfaces.py, which a registered class
must subclass.
"""

from __future__ import annotations

from collections.abc import Callable

from oncerec.errors import ConfigError
from oncerec.models.interfaces import KIND_BASES

KINDS = ("item", "user", "predictor")  # the ModelConfig field that names each kind's component
REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator: `@register("user", "gru")` makes the class the component `model.user=gru`."""

    def add(cls: type) -> type:
        if not issubclass(cls, KIND_BASES[kind]):
            raise TypeError(
                f"{cls.__name__} is registered as a {kind} component: subclass {KIND_BASES[kind].__name__}"
            )
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
from oncerec.models.item import fields, kcnn, lm, words  # noqa: E402, F401
from oncerec.models.predictors import ctr, dot  # noqa: E402, F401
from oncerec.models.user import attention, fastformer, gru, npa, pool, sequence  # noqa: E402, F401
