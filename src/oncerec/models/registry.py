"""The one registry: config names -> component classes. Each class registers itself beside its definition
(`@register("item", "cnn")`), with its config class (`config_class`) in the same module; the models package
imports every component module (`models/__init__.py`), so that importing it fills the table.

Each kind's interface (constructor, forward, declared capabilities such as `own_inputs`, `pointwise`, and
what representation it `gives` / `takes`) is its base class in models/interfaces.py, which a registered class
must subclass.
"""

from __future__ import annotations

from collections.abc import Callable

from oncerec.models.interfaces import KIND_BASES, ComponentConfig

KINDS = ("item", "user", "predictor")  # the ModelConfig field that chooses each kind's component
KIND_LABELS = {"item": "item encoder", "user": "user encoder", "predictor": "predictor"}
REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator: `@register("user", "gru")` makes the class the component `model.user=gru`."""

    def add(cls: type) -> type:
        if not issubclass(cls, KIND_BASES[kind]):
            raise TypeError(
                f"{cls.__name__} is registered as a {kind} component: subclass {KIND_BASES[kind].__name__}"
            )
        if not issubclass(cls.config_class, ComponentConfig):
            raise TypeError(f"{cls.__name__}.config_class: subclass ComponentConfig (models/interfaces.py)")
        if name in REGISTRY[kind]:
            raise ValueError(f"{kind} component `{name}` is registered twice")
        REGISTRY[kind][name] = cls
        return cls

    return add
