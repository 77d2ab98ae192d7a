"""Markdown reference pages made from the package itself: every configuration key (from the typed schema) and
every packaged preset (from its YAML file). The docs site renders them at build time (docs/hooks.py), so there
is no hand-kept copy to fall behind the code.

The schema is walked generically through pydantic's `model_fields`: a field whose type is a model is a section
of its own (`data`, `model`, ... and any deeper nesting), every other field is a key. A field that chooses a
component (`model.item`, typed `ComponentConfig`) is a key, whose values are the registry's names of its kind,
and a section for each of those components follows, with the keys of its config (`model.item=cnn`:
`model.item.kernel_size`, ...). The `data` section holds the keys every format shares; the data formats' own keys
follow it, from the table of formats.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from oncerec.config.catalog import first_sentence, leading_comment
from oncerec.config.schema import GROUPS, Config
from oncerec.data.formats import FORMATS, DataConfig
from oncerec.models.interfaces import ComponentConfig
from oncerec.models.registry import KIND_LABELS, REGISTRY

# how each bound of a numeric field reads (pydantic keeps `Field(ge=1)` as a metadata object with `.ge`)
_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def markdown_reference(root: type[BaseModel] = Config) -> str:
    """One section per configuration group (and per nested model inside one, and per component a group
    chooses among), one table row per key: its dotted name, type (with bounds), default and description."""
    out: list[str] = []
    for sec in _sections(root):
        out += [f"## {sec.title}", ""]
        if sec.about:
            out += [sec.about, ""]
        leaves = list(_leaves(sec.model))
        out += _key_table(sec.name, sec.anchor, leaves) if leaves else ["No keys of its own.", ""]
        if sec.model is DataConfig:
            out += _format_sections()
    return "\n".join(out)


def _key_table(section: str, anchor: str, keys: list[tuple[str, FieldInfo]]) -> list[str]:
    out = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, field in keys:
        out.append(
            f"| `{section}.{key}`{{#{anchor}.{key}}} | {_cell(type_text(field, key))} "
            f"| {_cell(default_text(field))} | {_cell(field.description or '')} |"
        )
    return [*out, ""]


def _format_sections() -> list[str]:
    """The data formats (what each reads), then the keys of their own: one section per config class that
    declares keys (the ONCE protocol's, random negatives', a format's), naming the formats that have them."""
    out = ["## Data formats", "", "| `data.format` | `data.source` holds | domain |", "|---|---|---|"]
    out += [f"| `{f.name}` | {_cell(f.about)} | {f.domain} |" for f in FORMATS.values()]
    out.append("")
    owners: dict[type[BaseModel], list[str]] = {}
    for fmt in FORMATS.values():
        for cls in reversed(fmt.config.__mro__):  # the shared parts (the protocol's) before a format's own
            if isinstance(cls, type) and issubclass(cls, DataConfig) and _declared(cls):
                owners.setdefault(cls, []).append(fmt.name)
    for cls, names in owners.items():
        out += [f"## `data` keys of {', '.join(f'`{n}`' for n in names)}", ""]
        about = _doc(cls)
        if about:
            out += [about, ""]
        out += _key_table("data", "data", [(key, cls.model_fields[key]) for key in _declared(cls)])
    return out


def _declared(cls: type[BaseModel]) -> list[str]:
    """The keys a data config class declares itself, besides `format` (and what DataConfig shares)."""
    if cls is DataConfig:
        return []
    return [k for k in cls.__dict__.get("__annotations__", {}) if k in cls.model_fields and k != "format"]


def markdown_presets() -> str:
    """One section per preset folder (the four groups, then the experiment specs), one row per preset: its
    name, the comment at the top of its file, and the keys it sets."""
    out: list[str] = []
    for group in _preset_groups():
        out += [f"## `{group}`", ""]
        what = "Packaged specs for `oncerec experiment SPEC`." if group not in GROUPS else None
        if what:
            out += [what, ""]
        out += ["| preset | what it is | sets |", "|---|---|---|"]
        for path in _preset_files(group):
            text = path.read_text(encoding="utf-8")
            values = yaml.safe_load(text) or {}
            sets = "<br>".join(_cell(f"`{k}: {_summary(v)}`") for k, v in values.items())
            name = path.name.removesuffix(".yaml")
            out.append(f"| `{name}`{{#{group}-{name}}} | {_cell(leading_comment(text))} | {sets} |")
        out.append("")
    return "\n".join(out)


def annotated_config(cfg: BaseModel) -> str:
    """A resolved configuration as YAML, each key followed by the first sentence of its description; each
    chosen component's keys in a section of their own (`model.item:`)."""
    out: list[str] = []
    for name, values in _value_sections(cfg):
        chosen = isinstance(values, ComponentConfig)
        out.append(
            f"{name}:" + (f"  # {KIND_LABELS[name.rsplit('.', 1)[-1]]} {values.name}" if chosen else "")
        )
        for key, _ in _leaves(type(values)):  # the values' own class: a data format's adds keys
            value = getattr(values, key)
            value = value.name if isinstance(value, ComponentConfig) else _flow(value)
            about = first_sentence(_description(type(values), key))
            about = about if len(about) <= 100 else about[:99].rstrip() + "…"
            out.append(f"  {key}: {value}" + (f"  # {about}" if about else ""))
    return "\n".join(out)


def _description(model: type[BaseModel], key: str) -> str:
    """A key's description; a data format's `format`, which only narrows the type, keeps DataConfig's."""
    for cls in model.__mro__:
        field = getattr(cls, "model_fields", {}).get(key)
        if field is not None and field.description:
            return field.description
    return ""


@dataclass
class _Section:
    name: str  # the dotted prefix of its keys
    model: type[BaseModel]
    title: str
    anchor: str  # unique: two components of a kind may have keys of one name
    about: str | None


def _sections(model: type[BaseModel], prefix: str = "", info: FieldInfo | None = None) -> Iterator[_Section]:
    """Every model under `model` that has keys of its own, and every component a choice field offers."""
    if prefix and any(True for _ in _leaves(model)):
        yield _Section(
            prefix, model, f"`{prefix}`", prefix, _doc(model) or (info.description if info else None)
        )
    for key, field in model.model_fields.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if _is_choice(field):
            for name, cls in sorted(REGISTRY[key].items()):
                own = cls.config_class is not ComponentConfig  # else the base's docstring, of no component
                about = (_doc(cls.config_class) if own else _doc(cls)) or f"The {KIND_LABELS[key]} `{name}`."
                yield _Section(dotted, cls.config_class, f"`{dotted}={name}`", f"{dotted}.{name}", about)
        elif (sub := _model_of(field)) is not None:
            yield from _sections(sub, dotted, field)


def _value_sections(values: BaseModel, prefix: str = "") -> Iterator[tuple[str, BaseModel]]:
    """(dotted name, values) of every model in a config that has keys, its chosen components included."""
    if prefix and any(True for _ in _leaves(type(values))):
        yield prefix, values
    for key, field in type(values).model_fields.items():
        sub, dotted = getattr(values, key), f"{prefix}.{key}" if prefix else key
        if _is_choice(field):
            if any(True for _ in _leaves(type(sub))):
                yield dotted, sub
        elif _model_of(field) is not None and sub is not None:
            yield from _value_sections(sub, dotted)


def _leaves(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    """The keys of a model: its plain fields and its component choices (a component config's `name` is the
    choice itself, not a key of its own)."""
    for key, field in model.model_fields.items():
        if issubclass(model, ComponentConfig) and key == "name":
            continue
        if _model_of(field) is None or _is_choice(field):
            yield key, field


def _is_choice(field: FieldInfo) -> bool:
    """A field that chooses a component of the registry (its own name is the kind)."""
    sub = _model_of(field)
    return sub is not None and issubclass(sub, ComponentConfig)


def _model_of(field: FieldInfo) -> type[BaseModel] | None:
    """The model a field holds (also inside `X | None`), or None for a plain key."""
    candidates = get_args(field.annotation) if _is_union(field.annotation) else (field.annotation,)
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def type_text(field: FieldInfo, key: str = "") -> str:
    """A field's type as a user writes the value, with its bounds: `int, ≥ 1`, `one of `a`, `b``; for the
    field `key` that chooses a component, the registry's names of that kind."""
    if _is_choice(field):
        return "one of " + ", ".join(f"`{n}`" for n in sorted(REGISTRY[key]))
    text = _type_name(field.annotation)
    bounds = [
        f"{sign} {getattr(m, attr)}"
        for m in field.metadata
        for attr, sign in _BOUNDS
        if getattr(m, attr, None) is not None
    ]
    return ", ".join([text, *bounds])


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if _is_union(annotation):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple of {_type_name(args[0])}"
        return f"{len(args)} values: " + ", ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "none"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    """The default as it would be written on the command line (YAML flow style)."""
    if field.is_required():
        return "required"
    return f"`{_flow(field.get_default(call_default_factory=True))}`"


def _flow(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def _summary(value: Any) -> str:
    """A preset value in one short line: flat values as written, nested mappings by their keys."""
    nested = isinstance(value, (dict, list)) and any(
        isinstance(v, (dict, list)) for v in (value.values() if isinstance(value, dict) else value)
    )
    if isinstance(value, dict) and nested:
        return ", ".join(f"{k} ({_summary(v)})" if isinstance(v, dict) else str(k) for k, v in value.items())
    if nested:
        return f"{len(value)} entries"
    return _flow(value)


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell: outside code spans (which keep their text), `|` escaped and `<...>`
    shown as text rather than taken for HTML."""
    parts = re.split(r"(`[^`]*`)", text.replace("\n", " "))
    return "".join(
        p if p.startswith("`") else p.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        for p in parts
    )


def _doc(model: type[BaseModel]) -> str | None:
    doc = model.__dict__.get("__doc__")
    return " ".join(doc.split("\n\n")[0].split()) if doc else None


def _preset_groups() -> list[str]:
    folders = [p.name for p in (resources.files("oncerec.config") / "presets").iterdir() if p.is_dir()]
    return [g for g in GROUPS if g in folders] + sorted(f for f in folders if f not in GROUPS)


def _preset_files(group: str) -> list[Any]:
    folder = resources.files("oncerec.config") / "presets" / group
    return sorted((p for p in folder.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name)
