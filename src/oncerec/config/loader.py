"""Resolve `group=<preset|file|folder>` and `group.key=value` arguments into a validated `Config`."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from oncerec.config.catalog import preset_names
from oncerec.config.schema import GROUPS, Config
from oncerec.data.formats.registry import data_keys, saved_data_config, unknown_key
from oncerec.errors import ConfigError


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


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
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


def build_config(args: list[str], base: dict | None = None, shared: Sequence[str] = ()) -> Config:
    """Build a config from CLI-style arguments on top of `base` (e.g. a saved run's config).

    `data=demo-small`, `model=nrms.yaml`, `data=/path/to/MIND`: replace a whole group;
    `exp.lr=1e-4`, `model.item_fields=[title,abstract]`: set one key (the value is parsed as YAML).
    Every group preset applies first (a later one of the same group wins), then every key in order, whatever
    their order in `args`: `model.hidden_size=64 model=naml` is NAML with hidden size 64, so that an
    experiment's common keys reach rows that choose their own presets.

    `shared`: arguments of the same kind, applied before `args`, that serve many models (the demo's compact
    sizes, an experiment's common block): unlike `args`, their model keys may be ones the chosen components do
    not read (see `Config.explicit`).
    """
    tree: dict = {g: dict(v) for g, v in (base or {}).items()}
    pairs = []
    for arg, own in [*((a, False) for a in shared), *((a, True) for a in args)]:
        key, sep, raw = arg.partition("=")
        if not sep:
            raise ConfigError(f"`{arg}`: expected key=value (e.g. model=nrms or exp.lr=1e-4)")
        if key not in GROUPS and key.split(".")[0] not in GROUPS:
            raise ConfigError(f"`{key}`: unknown config group; valid groups: {', '.join(GROUPS)}")
        pairs.append((key, raw, own))
    explicit: set[str] = set()
    for key, raw, own in pairs:
        if key in GROUPS:
            tree[key] = load_group(key, raw)
            # the keys of the user's own file are chosen as much as key overrides; a packaged preset's are not
            explicit = {k for k in explicit if not k.startswith(f"{key}.")}
            if own and raw.endswith((".yaml", ".yml")):
                explicit |= {f"{key}.{k}" for k in tree[key]}
    for key, raw, own in pairs:
        if key in GROUPS:
            continue
        _set_dotted(tree, key, raw if _is_text_field(key) else _parse_value(raw))
        if own:
            explicit.add(".".join(key.split(".")[:2]))
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_explain(e, tree)) from None
    cfg._explicit = frozenset(explicit)
    return cfg


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
    """A run's `config.yaml`, validated as strictly as the command line (errors name the file). The data keys
    of a run saved before each format had its own are read as today's (`saved_data_config`)."""
    tree = _read_yaml(path, str(path)) if path.is_file() else None
    if tree is None:
        raise ConfigError(f"{path}: no such file (not a run directory?)")
    if isinstance(tree.get("data"), dict):
        tree["data"] = saved_data_config(tree["data"])
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_explain(e, tree)}") from None


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)


def config_diff(
    a: Config, b: Config, groups: tuple[str, ...] = ("data", "model", "embed", "exp")
) -> list[str]:
    """Keys whose values differ between two configs, as `group.key: old -> new` (`(absent)`: a key of one
    data format that the other does not have)."""
    out = []
    for g in groups:
        da, db = getattr(a, g).model_dump(), getattr(b, g).model_dump()
        for k in {**da, **db}:
            if k not in da or k not in db or da[k] != db[k]:
                out.append(f"{g}.{k}: {_shown(da, k)} -> {_shown(db, k)}")
    return out


def _shown(values: dict, key: str) -> str:
    return repr(values[key]) if key in values else "(absent)"
