"""Resolve `group=<preset|file|folder>` and `group.key=value` arguments into a validated `Config`, and read a
run's saved config (the flat model layout of older runs included)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from oncerec.config.catalog import preset_names
from oncerec.config.schema import GROUPS, Config, ModelConfig
from oncerec.data.formats.registry import data_keys, saved_data_config, unknown_key
from oncerec.errors import ConfigError
from oncerec.models.registry import KINDS, REGISTRY


def _read_yaml(path: Path | Any, what: str) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def load_group(group: str, ref: str) -> dict:
    """Raw values for one group from a packaged preset name, a YAML file, or (data only) a folder."""
    path = Path(ref)
    if ref.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise ConfigError(f"{group}={ref}: no such file")
        return _read_yaml(path, str(path))
    if group == "data" and path.is_dir():
        return {"source": str(path.resolve()), "format": "mind", "name": path.resolve().name}
    if ref in preset_names(group):
        preset = resources.files("oncerec.config") / "presets" / group / f"{ref}.yaml"
        values = _read_yaml(preset, f"preset {group}={ref}")
        if "name" in GROUPS[group].model_fields:
            values.setdefault("name", ref)
        return values
    hint = " or a folder" if group == "data" else ""
    raise ConfigError(
        f"{group}={ref}: not a preset, a .yaml file{hint}. Valid presets: {', '.join(preset_names(group))}"
    )


# `model.item=NAME` and the like: the keys that choose a component
CHOICES = {f"model.{kind}" for kind in KINDS}


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        if isinstance(tree.get(p), str) and ".".join(key.split(".")[:2]) in CHOICES:
            tree[p] = {"name": tree[p]}  # a component chosen by name (`user: gru`) takes its keys beside it
        tree = tree.setdefault(p, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"{key}: {p} is not a mapping")
    tree[leaf] = value


def _explain(error: ValidationError, tree: dict) -> str:
    lines = []
    for e in error.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden" and len(e["loc"]) == 2 and e["loc"][0] == "data":
            # the data keys are the chosen format's: the line names it and the formats that have the key
            lines.append(unknown_key(tree.get("data") or {}, str(e["loc"][1])))
        elif e["type"] == "extra_forbidden":
            owner = _model_at(Config, e["loc"][:-1])
            valid = ", ".join(owner.model_fields) if owner else "?"
            lines.append(f"unknown key `{loc}`; valid keys: {valid}")
        elif e["type"] == "value_error":
            # a model's validator names the keys in its message; a field's is prefixed with the key
            owner = _model_at(Config, e["loc"][:-1]) if e["loc"] else None
            leaf = owner is not None and str(e["loc"][-1]) in owner.model_fields
            leaf = leaf and _model_at(Config, e["loc"]) is None  # a key, not a group or a nested model
            lines.append((f"`{loc}`: " if leaf else "") + str(e["ctx"]["error"]))
        else:
            lines.append(f"`{loc}`: {e['msg']} (got {e.get('input')!r})")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return None
        model = field.annotation
    return model


def build_config(args: list[str]) -> Config:
    """Build a config from CLI-style arguments (every key not given keeps its default).

    `data=demo-small`, `model=nrms.yaml`, `data=/path/to/MIND`: replace a whole group;
    `model.user=gru`: choose a component (with its defaults); `exp.lr=1e-4`, `model.user.gru_mode=con`,
    `model.item_fields=[title,abstract]`: set one key (the value is parsed as YAML).
    Every group preset applies first (a later one of the same group wins), then every component choice, then
    every key in order, whatever their order in `args`: `model.hidden_size=64 model=naml` is NAML with hidden
    size 64 and `model.user.gru_mode=con model.user=gru` a GRU in `con` mode, so that an experiment's common
    keys reach rows that choose their own presets and components.
    """
    tree: dict = {}
    pairs = []
    for arg in args:
        key, sep, raw = arg.partition("=")
        if not sep:
            raise ConfigError(f"`{arg}`: expected key=value (e.g. model=nrms or exp.lr=1e-4)")
        if key not in GROUPS and key.split(".")[0] not in GROUPS:
            raise ConfigError(f"`{key}`: unknown config group; valid groups: {', '.join(GROUPS)}")
        pairs.append((key, raw))
    for key, raw in pairs:
        if key in GROUPS:
            tree[key] = load_group(key, raw)
    keys = [(key, raw) for key, raw in pairs if key not in GROUPS]
    for key, raw in sorted(keys, key=lambda pair: pair[0] not in CHOICES):  # stable: choices first, in order
        _set_dotted(tree, key, raw if _is_text_field(key) else _parse_value(raw))
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_explain(e, tree)) from None


def _is_text_field(key: str) -> bool:
    """Whether `group.key` is a plain string field, whose value is taken as written: parsed as YAML,
    `data.prompt=book title: {title}` would become a mapping."""
    group, _, name = key.partition(".")
    field = (data_keys() if group == "data" else GROUPS[group].model_fields).get(name)
    return field is not None and field.annotation is str


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def load_saved_config(path: Path) -> Config:
    """A run's `config.yaml`, validated as strictly as the command line (errors name the file). A run saved
    before the components had configs of their own (one flat `model` group) is read in the new layout, and the
    data keys of one saved before each format had its own are read as today's (`saved_data_config`)."""
    tree = _read_yaml(path, str(path)) if path.is_file() else None
    if tree is None:
        raise ConfigError(f"{path}: no such file (not a run directory?)")
    if isinstance(tree.get("model"), dict):
        tree["model"] = from_flat_model(tree["model"])
    if isinstance(tree.get("data"), dict):
        tree["data"] = saved_data_config(tree["data"])
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_explain(e, tree)}") from None


# component keys that had other names in the flat model layout (the language-model item encoder's)
FLAT_NAMES = {"lm": "item_lm", "dtype": "lm_dtype", "pooling": "lm_pooling", "norm": "lm_norm"}


def from_flat_model(values: dict) -> dict:
    """The `model` group of a config saved in the flat layout (every knob a `model.<key>`, `item: cnn`) in the
    layout of components with their own keys: the model-wide keys stay, each chosen component takes the keys
    of its config (`gru_mode` under `user`; `item_lm` as `item.lm`, see FLAT_NAMES), and the rest, which no
    chosen component read, are dropped. A group in the new layout is returned as it is."""
    flat = all(isinstance(values.get(kind), str) for kind in KINDS) and not set(values) <= set(
        ModelConfig.model_fields
    )
    if not flat:
        return values
    out = {k: v for k, v in values.items() if k in ModelConfig.model_fields}
    for kind in KINDS:
        name = values[kind]
        if name not in REGISTRY[kind]:
            continue  # the schema names the valid components
        keys = [k for k in REGISTRY[kind][name].config_class.model_fields if k != "name"]
        out[kind] = {"name": name} | {
            k: values[FLAT_NAMES.get(k, k)] for k in keys if FLAT_NAMES.get(k, k) in values
        }
    return out


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)


def config_diff(a: Config, b: Config) -> list[str]:
    """Keys whose values differ between two configs, as `group.key: old -> new` (nested keys dotted, as
    `model.user.gru_mode`; a key one side lacks shows as `—`)."""
    out: list[str] = []
    for g in GROUPS:
        _diff(getattr(a, g).model_dump(), getattr(b, g).model_dump(), g, out)
    return out


class _Absent:
    def __repr__(self) -> str:
        return "—"


def _diff(a: dict, b: dict, prefix: str, out: list[str]) -> None:
    for k in [*a, *(k for k in b if k not in a)]:
        x, y = a.get(k, _Absent()), b.get(k, _Absent())
        if isinstance(x, dict) and isinstance(y, dict):
            _diff(x, y, f"{prefix}.{k}", out)
        elif x != y:
            out.append(f"{prefix}.{k}: {x!r} -> {y!r}")
