"""`oncerec experiment SPEC`: a grid of training runs and one results table.

A spec (YAML; packaged ones live in config/presets/experiment/) names config overrides along axes; every
combination of one value per axis, for every seed, is one run of `oncerec train`. Optional `setup` steps
(oncerec commands, e.g. GENRE generation and merging) run first, once, unless what they create exists:

    name: once-demo
    seeds: [2023, 2024]
    common: [data=demo-small, exp=demo]             # overrides of every run
    axes:
      model: {naml: [model=naml], nrms: [model=nrms]}
      item: {word: [], dire: [model.item=lm, model.item.lm=smollm2-135m, ...]}
    baseline: naml/word                              # the row the others are compared with
    source: ONCE's released Goodreads folder         # optional: the spec needs `--source DIR`, `{source}`

Each run's overrides are the common block, then the row's own, then those given after the spec name (later
ones win, as on the `oncerec train` command line). They are plain overrides of every row: a key the row's
component does not have (`model.item.layer` for a row with a word-level item encoder) is an error naming the
row, before anything runs. Keys for some rows only go into those rows (their axis values), and the model-wide
sizes (`model.hidden_size`, `model.num_heads`, ...) fit every row.

Runs go to `<out>/<name>/<row>/seed-<s>/` and run in a subprocess each (so one crash or one process-wide
setting cannot leak into the next); a run with a metrics.json is finished and skipped, an interrupted one
resumes from its checkpoint. The table (`results.md`, `results.csv`) has the mean and standard deviation over
seeds of each test metric the runs chose (`exp.metrics`), of the first one over each slice of the split (new
items, cold users, ...), and the relative change of the first one over the baseline row.
"""

from __future__ import annotations

import copy
import csv
import fnmatch
import itertools
import logging
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from oncerec.config.loader import build_config, load_saved_config
from oncerec.config.schema import Config
from oncerec.errors import ConfigError, OncerecError
from oncerec.eval.metrics import read_metrics, table_metrics
from oncerec.eval.tables import DASH, mean_std, metric_table, value
from oncerec.training.trainer import diff_line, resume_diff, run_diff

logger = logging.getLogger(__name__)

PRESETS = Path(__file__).resolve().parent / "config" / "presets" / "experiment"
SPLITS = ("valid", "test")  # the splits a finished run has metrics for
TABLE_FILES = ("results.md", "results.csv")  # beside the rows' folders


@dataclass
class Spec:
    name: str
    seeds: list[int]
    common: list[str]
    axes: dict[str, dict[str, list[str]]]
    baseline: str = ""
    split: str = "test"
    setup: list[dict] = field(default_factory=list)  # {creates: path, commands: [[oncerec args...]]}
    source: str = ""  # what `--source DIR` must be, when the spec reads data of the user's
    rows: list[tuple[str, list[str]]] = field(default_factory=list)

    def __post_init__(self):
        for combo in itertools.product(*(axis.items() for axis in self.axes.values())):
            label = "/".join(k for k, _ in combo)
            self.rows.append((label, [o for _, overrides in combo for o in overrides]))
        labels = [r for r, _ in self.rows]
        if self.baseline and self.baseline not in labels:
            raise ConfigError(
                f"experiment baseline `{self.baseline}` is not a row; rows: {', '.join(labels)}"
            )
        self._check_folders()

    def subset(self, rows: str = "", seeds: int | None = None) -> Spec:
        """The rows whose label matches one of `rows` (shell patterns, comma-separated: `nrms/*,naml/word`;
        empty: every row), each with the first `seeds` of the spec's seeds (None: all)."""
        chosen = self.rows
        if rows:
            patterns = [p.strip() for p in rows.split(",") if p.strip()]
            chosen = [r for r in self.rows if any(fnmatch.fnmatchcase(r[0], p) for p in patterns)]
            if not chosen:
                labels = ", ".join(label for label, _ in self.rows)
                raise ConfigError(f"--rows {rows}: no row matches; the rows are {labels}")
        if seeds is not None and not 1 <= seeds <= len(self.seeds):
            raise ConfigError(
                f"--seeds {seeds}: give 1 to {len(self.seeds)} (the spec's seeds are {self.seeds})"
            )
        part = copy.copy(self)
        part.rows, part.seeds = chosen, self.seeds[:seeds]
        if self.baseline not in {label for label, _ in chosen}:
            part.baseline = ""
        return part

    def _check_folders(self) -> None:
        """Before anything runs: every run's folder is inside `--out` and is its own. A folder shared by two
        rows would show the first one's metrics for both (the second is `finished`); names compare without
        case, as a case-insensitive file system would."""
        if not _plain(self.name):
            raise ConfigError(
                f"experiment name `{self.name}` is not a plain folder name (it would write outside --out); "
                "give one without '/', '\\', '..'"
            )
        taken = {name: f"the table file {name}" for name in TABLE_FILES}
        for row, _ in self.rows:
            folder = row_folder(row)
            if not _plain(folder):
                raise ConfigError(
                    f"experiment row `{row}`: `{folder}` is not a plain folder name; rename its axis value"
                )
            first = taken.setdefault(folder.casefold(), f"row `{row}`")
            if first != f"row `{row}`":
                raise ConfigError(
                    f"experiment row `{row}` and {first} map to one folder ({folder}) under --out; rename an "
                    "axis value"
                )


def load_spec(name_or_path: str) -> Spec:
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESETS / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ConfigError(f"experiment `{name_or_path}`: not a file and not a packaged spec ({known})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: an experiment spec is a mapping (name:, seeds:, common:, axes:, ...), not {raw!r:.80}"
        )
    allowed = {"name", "seeds", "common", "axes", "baseline", "split", "setup", "source"}
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(allowed))}"
        )
    axes = raw.get("axes")
    if not (isinstance(axes, dict) and axes and all(isinstance(v, dict) and v for v in axes.values())):
        raise ConfigError(
            f"{path}: `axes` maps each axis name to {{value name: [overrides]}} (at least one axis, one value)"
        )
    seeds = raw.get("seeds", [2023])
    if not (isinstance(seeds, list) and seeds and all(type(x) is int for x in seeds)):
        raise ConfigError(f"{path}: `seeds` is a non-empty list of integers, got {seeds!r}")
    split = str(raw.get("split", "test"))
    if split not in SPLITS:
        raise ConfigError(f"{path}: split `{split}`: valid: {', '.join(SPLITS)}")
    try:
        return Spec(
            name=str(raw.get("name", path.stem)),
            seeds=seeds,
            common=_strings(raw.get("common"), "`common`"),
            axes={
                str(a): {str(k): _strings(v, f"`axes.{a}.{k}`") for k, v in values.items()}
                for a, values in axes.items()
            },
            baseline=str(raw.get("baseline", "")),
            split=split,
            setup=_setup(raw.get("setup") or []),
            source=str(raw.get("source") or ""),
        )
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _strings(value, what: str) -> list[str]:
    """A spec's list of overrides or command arguments (none: empty). A string is refused: it would be read as
    its characters, one override each."""
    if value is None:
        return []
    if not (isinstance(value, list) and all(isinstance(x, str | int | float) for x in value)):
        raise ConfigError(f"{what} is a YAML list ([a, b, ...]), not {value!r:.80}")
    return [str(x) for x in value]


def _setup(steps) -> list[dict]:
    form = "`setup` is a list of steps {creates: PATH, commands: [[oncerec args...], ...]}"
    if not isinstance(steps, list):
        raise ConfigError(f"{form}, not {steps!r:.80}")
    out = []
    for step in steps:
        if not (isinstance(step, dict) and set(step) == {"creates", "commands"}):
            raise ConfigError(f"{form}, not {step!r:.80}")
        if not (isinstance(step["creates"], str) and isinstance(step["commands"], list) and step["commands"]):
            raise ConfigError(f"{form}: a path and a non-empty list of commands, not {step!r:.80}")
        commands = [_strings(c, "each command of `setup`") for c in step["commands"]]
        out.append({"creates": step["creates"], "commands": commands})
    return out


def row_folder(row: str) -> str:
    return row.replace("/", "__")


def _plain(name: str) -> bool:
    """One folder name that stays where it is put (no separator, not `.` or `..`) and that a file system takes."""
    return (
        name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
        and len(name.encode("utf-8", "surrogatepass")) <= 255
    )


def run_dir(out: Path, spec: Spec, row: str, seed: int) -> Path:
    return out / spec.name / row_folder(row) / f"seed-{seed}"


def run_experiment(
    spec: Spec, out: Path, extra: list[str], quiet: bool = True, source: Path | None = None
) -> Path:
    """Run the setup steps whose output is missing and every unfinished run of the grid, then write the
    table; returns the results.md path. `{dir}` in a setup command or an override is the experiment folder,
    `{source}` the folder given as `source` (required when the spec says what it must be)."""
    home = out / spec.name
    if spec.source and source is None:
        raise ConfigError(f"experiment `{spec.name}` reads your data: give --source DIR, {spec.source}")
    if source is not None and not source.is_dir():
        raise ConfigError(f"--source {source}: no such folder")

    def fill(arg: str) -> str:
        arg = arg.replace("{dir}", str(home))
        return arg.replace("{source}", str(source.resolve())) if source is not None else arg

    for step in spec.setup:
        if (home / step["creates"]).exists():
            continue
        for command in step["commands"]:
            args = [fill(str(a)) for a in command]
            logger.info(f"setup: oncerec {' '.join(args)}")
            done = subprocess.run(
                [sys.executable, "-m", "oncerec.cli", *args], capture_output=quiet, text=True
            )
            if done.returncode != 0:
                raise OncerecError(
                    f"setup step `oncerec {' '.join(args)}` failed (exit {done.returncode})\n"
                    + ((done.stderr or "")[-2000:] if quiet else "")
                )
    todo = []
    for row, overrides in spec.rows:
        for seed in spec.seeds:
            folder = run_dir(out, spec, row, seed)
            args = [*spec.common, *overrides, *extra, f"exp.seed={seed}", f"exp.out_dir={folder}"]
            todo.append((row, seed, folder, [fill(a) for a in args]))
    # Every run's config is resolved, and every saved one compared, before the first run trains.
    configs = {folder: _row_config(row, args) for row, _, folder, args in todo}
    started = {folder: _check_saved(folder, cfg) for folder, cfg in configs.items()}
    logger.info(f"experiment {spec.name}: {len(spec.rows)} rows x {len(spec.seeds)} seeds into {home}")
    began, trained = time.perf_counter(), 0
    for k, (row, seed, folder, args) in enumerate(todo, 1):
        if (folder / "metrics.json").is_file():
            logger.info(f"[{k}/{len(todo)}] {row} seed {seed}: finished, skipped")
            continue
        if started[folder]:
            args = [*args, "exp.resume=true"]
        cmd = [sys.executable, "-m", "oncerec.cli", "train", *args]
        cmd += ["--quiet"] if quiet else []
        run_began = time.perf_counter()
        done = subprocess.run(cmd, capture_output=quiet, text=True)
        if done.returncode != 0:
            raise OncerecError(
                f"run {row} seed {seed} failed (exit {done.returncode}); its command:\n  {' '.join(cmd)}\n"
                + ((done.stderr or "")[-2000:] if quiet else "")
            )
        trained += 1
        now = time.perf_counter()
        left = sum(not (f / "metrics.json").is_file() for _, _, f, _ in todo[k:])
        eta = _duration((now - began) / trained * left) if left else "0s"
        logger.info(
            f"[{k}/{len(todo)}] {row} seed {seed}: {_duration(now - run_began)}, "
            f"{_first_metric(folder, spec.split)} | elapsed {_duration(now - began)}, ETA {eta}"
        )
    return write_table(spec, out)


def _duration(seconds: float) -> str:
    """52s, 6m04s, 1h02m."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _first_metric(folder: Path, split: str) -> str:
    """The run's first chosen metric on the experiment's split, as `test auc 0.6543`."""
    metrics = read_metrics(folder / "metrics.json").get(split, {})
    name = table_metrics(load_saved_config(folder / "config.yaml").exp.metrics)[0]
    got = metrics.get(name)
    return f"{split} {name} {got:.4f}" if isinstance(got, float) else f"{split} {name} {DASH}"


def _row_config(row: str, args: list[str]) -> Config:
    try:
        return build_config(args)
    except ConfigError as e:
        raise ConfigError(f"experiment row `{row}`: {e}") from None


def _check_saved(folder: Path, cfg: Config) -> bool:
    """True if the folder holds a run of `cfg` (finished, or to resume). A saved run of another config is an
    error naming the keys that differ: its results would otherwise stand in the table for the config asked
    for."""
    saved = folder / "config.yaml"
    if not saved.is_file():
        return False
    before = load_saved_config(saved)
    if (folder / "metrics.json").is_file():  # finished: even epochs or patience would change its numbers
        diffs = run_diff(before, cfg, {"exp.out_dir", "exp.resume"})
    else:
        diffs = resume_diff(before, cfg)
    if diffs:
        raise ConfigError(
            f"{folder} holds a run of another config than this experiment asks for ({diff_line(diffs)}); "
            "remove that folder to run it again, or give another --out"
        )
    return True


def write_table(spec: Spec, out: Path) -> Path:
    """results.md and results.csv: per row, the mean ± std over its finished seeds of the metrics the runs
    chose (the columns of every table, eval/tables.py), and the relative change of the first one over the
    baseline row."""
    rows, choices = [], []
    for row, _ in spec.rows:
        done = [f for f in (run_dir(out, spec, row, s) for s in spec.seeds) if (f / "metrics.json").is_file()]
        if done:
            rows.append(
                ([row, str(len(done))], [read_metrics(f / "metrics.json").get(spec.split, {}) for f in done])
            )
            choices += [load_saved_config(f / "config.yaml").exp.metrics for f in done]
    table, cols = metric_table(["run", "seeds"], rows, choices, seeds=True)
    first = cols[0].key
    means = [{c.key: mean_std(value(m, c.key) for m in ms) for c in cols} for _, ms in rows]
    base = next(
        (mean[first][0] for (labels, _), mean in zip(rows, means, strict=True) if labels[0] == spec.baseline),
        None,
    )
    rel = [(mean[first][0] - base) / base if base else None for mean in means]
    if base:
        table.add_column(
            f"{cols[0].header} vs {spec.baseline}", [DASH if math.isnan(r) else f"{r:+.2%}" for r in rel]
        )
    folder = out / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["run", "seeds", *(f"{c.key}_{s}" for c in cols for s in ("mean", "std")), f"{first}_rel_change"]
        )
        for (labels, _), mean, r in zip(rows, means, rel, strict=True):
            stats = (f"{mean[c.key][i]:.6f}" for c in cols for i in (0, 1))
            w.writerow([*labels, *stats, "" if r is None else f"{r:.6f}"])
    over = f"mean ± std over seeds {spec.seeds}" if len(spec.seeds) > 1 else f"seed {spec.seeds[0]}"
    title = f"# {spec.name}: {spec.split} metrics, {over}"
    (folder / "results.md").write_text(f"{title}\n\n{table.markdown()}\n")
    return folder / "results.md"
