"""The Python API: one function per job. The `oncerec` command calls these; nothing here is CLI-only.

    import oncerec
    run = oncerec.train(data="demo-tiny", model="nrms", exp="quick", out_dir="runs/x")
    run = oncerec.load_run("runs/x")
    run.evaluate("test")                       # {"auc": ..., "mrr": ..., ...}, as metrics.json
    run.recommend(user="U1", k=10)             # [Recommendation(id, score, title), ...]
    run.export("exports/x", index="hnsw")
    oncerec.prepare("raw/", out="ds/", format="mind")
    oncerec.presets("model")                   # ["autoint", "bert-naml", ...]

Heavy libraries (torch, transformers) are imported by the calls, not by `import oncerec`.

What the calls report on the way (where a run is, each validation, what `prepare` read, the warnings) goes to
the `oncerec` logger: printed on stdout as the command line prints it where the caller configured no logging
of their own, else left to the caller's handlers (`oncerec.logs.default_output`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oncerec.logs import default_output

if TYPE_CHECKING:
    from oncerec.config.schema import Config
    from oncerec.data.dataset import Dataset
    from oncerec.run import Run
    from oncerec.training.session import Run as TrainedRun


def overrides_list(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """`{"model.hidden_size": 64}` or `["model.hidden_size=64"]` as command-line overrides. A non-string value is
    written as JSON, which the config reads back as the same YAML value (lists, numbers, booleans)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
    if isinstance(overrides, str):
        raise TypeError("overrides: give a mapping or a list of `key=value` strings, not one string")
    return list(overrides)


def make_config(
    data: str | None = None,
    model: str | None = None,
    exp: str | None = None,
    embed: str | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Config:
    """The validated configuration of a run: each group a preset name, a YAML file (or, for data, a folder),
    then `overrides` (`{"exp.lr": 1e-4, "model.user": "gru", "model.user.gru_mode": "con"}`). Unknown keys
    (a key the chosen component does not have among them) and wrong types raise `ConfigError`."""
    from oncerec.config.loader import build_config

    groups = {"data": data, "model": model, "exp": exp, "embed": embed}
    args = [f"{group}={ref}" for group, ref in groups.items() if ref is not None]
    return build_config([*args, *overrides_list(overrides)])


def train(
    data: str = "demo-tiny",
    model: str = "nrms",
    exp: str | None = None,
    embed: str | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> Run:
    """Trains a model, evaluates its best weights on valid and test (metrics.json), and returns the run.

    `out_dir` is the run directory (default: `runs/<data>-<model>-<time>`, or `exp.out_dir`); a run stopped
    half-way continues from its last checkpoint with `overrides={"exp.resume": True}`."""
    extra = overrides_list(overrides) + ([f"exp.out_dir={out_dir}"] if out_dir is not None else [])
    return train_config(make_config(data, model, exp, embed, extra), progress=progress)


def train_config(cfg: Config, progress: bool = True) -> Run:
    """`train` for a configuration already built (the command line builds its own)."""
    from oncerec.training.pipeline import train as run_steps

    with default_output():
        run, _ = run_steps(cfg, progress=progress)
    return _with_export(run)


def load_run(path: str | Path, data: str | None = None) -> Run:
    """A trained run (its best weights) for evaluation, recommendation and export. `data`: another dataset
    with the same vocabularies (e.g. one made by `oncerec genre merge`)."""
    from oncerec.training.session import load_run as load

    with default_output():  # a checkpoint skipped, when the run has no best weights
        return _with_export(load(Path(path), data=data))


def prepare(
    raw: str | Path,
    out: str | Path | None = None,
    format: str = "mind",
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    strict: bool = False,
    progress: bool = True,
) -> Dataset:
    """Reads a raw data folder (`format`: a name of `oncerec.data.formats.FORMATS`, e.g. mind, goodreads,
    generic) into a new dataset directory (default `<raw>-prepared` beside it) and returns it (`.stats`: the
    counts of stats.json). `overrides`: data options, e.g. `{"data.split": "once"}`. What it read and its
    warnings (repeated interactions, ids missing from every news file, ...) go to the `oncerec` logger."""
    from oncerec.data.dataset import Dataset
    from oncerec.data.formats import FORMATS
    from oncerec.data.prepare import prepare as build

    raw = Path(raw).resolve()
    extra = overrides_list(overrides)
    # a format whose protocol (negatives, text fields) comes from a data preset starts from it
    starts_from = FORMATS[format].preset if format in FORMATS else ""
    preset = [f"data={starts_from}"] if starts_from and not any(o.startswith("data=") for o in extra) else []
    cfg = make_config(
        overrides=[*preset, f"data.source={raw}", f"data.name={raw.name}", f"data.format={format}", *extra]
    ).data
    if strict:
        cfg.strict = True
    target = Path(out) if out is not None else raw.parent / f"{raw.name}-prepared"
    with default_output():
        build(raw, cfg, target, progress=progress)
    return Dataset(target)


def presets(group: str) -> list[str]:
    """The packaged preset names of a config group (data, model, embed, exp) or of `experiment` specs."""
    from oncerec.config.catalog import PRESET_GROUPS, preset_names
    from oncerec.errors import ConfigError

    if group not in PRESET_GROUPS:
        raise ConfigError(f"no preset group `{group}`; groups: {', '.join(PRESET_GROUPS)}")
    return preset_names(group)


def _with_export(run: TrainedRun) -> Run:
    from dataclasses import fields

    from oncerec.run import Run

    return Run(**{f.name: getattr(run, f.name) for f in fields(run)})
