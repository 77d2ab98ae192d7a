"""Faults a new user or an attacker gives each surface (the service, `genre import`, the readers, experiments,
evaluation, resume): the key never leaks, no answer is silently wrong, nothing done is lost, and bad input ends
in one line naming the option or file and the fix (a 4xx / 503 with the reason over HTTP). The list of cases is
the test: each case is a function registered with `@case(...)`, and each fails on the code before its fix."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SMALL, assert_one_line_error

from oncerec.cli import main
from oncerec.config.loader import build_config
from oncerec.data.dataset import resolve_dataset
from oncerec.train.trainer import train

QUIET = {"progress": False, "log": lambda *_: None}


@dataclass
class Context:
    tmp: Path
    run: Path  # a trained NAML run on demo-tiny (two steps)
    tiny: Path  # demo-tiny's prepared dataset
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture

    def copy(self, path: Path, name: str | None = None) -> Path:
        out = self.tmp / (name or path.name)
        shutil.copytree(path, out)
        return out

    def file(self, name: str, text: str = "x\n") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def error(self, argv: list[str], needle: str, absent: tuple[str, ...] = ()) -> str:
        """Runs the command; it must end in one line `error: ...` holding `needle`, exit 2, and write none of
        `absent` (names under tmp). Returns the line."""
        self.capsys.readouterr()
        code = main(argv)
        line = assert_one_line_error(code, self.capsys.readouterr().err, needle)
        for name in absent:
            assert not (self.tmp / name).exists(), f"{name} was written"
        return line


CASES: dict[str, Callable[[Context], None]] = {}


def case(name: str) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    def add(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return add


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = build_config(
        ["data=demo-tiny", "model=naml", "exp=quick", "exp.max_steps=2", f"exp.out_dir={out}"], shared=SMALL
    )
    train(cfg, **QUIET)
    return out, resolve_dataset(cfg.data, **QUIET)


# ------------------------------------------------------------------------------------------------ secrets


# -------------------------------------------------------------------------------------- serving and export


# ---------------------------------------------------------------------------------------- GENRE import


# ------------------------------------------------------------------------------------ readers and datasets


# ------------------------------------------------------------------------ experiments, evaluation, resume


def _spec(ctx: Context, text: str) -> list[str]:
    """`experiment` argv of a spec file holding `text`, into tmp/out/deep."""
    return ["experiment", str(ctx.file("spec.yaml", text)), "--out", str(ctx.tmp / "out" / "deep")]


def _resume(out: Path, *overrides: str, model: str = "naml") -> list[str]:
    """`train` argv resuming the run in `out` (made as `trained` makes its run) up to step 4."""
    from conftest import SHARED

    args = ["data=demo-tiny", f"model={model}", "exp=quick", "exp.max_steps=4", f"exp.out_dir={out}"]
    return ["train", *args, "exp.resume=true", *overrides, *SHARED, "--quiet"]


def _full_ranking(ctx: Context, *names: str) -> dict:
    """`evaluate --full-ranking names` of the trained run: its test metrics."""
    import json

    ctx.capsys.readouterr()
    assert main(["evaluate", str(ctx.run), "--split", "test", "--full-ranking", *names]) == 0
    return json.loads(ctx.capsys.readouterr().out)["test"]


@case("runs: experiment rows that map to one folder are refused before anything runs")
def _(ctx: Context):
    common = "common: [data=demo-tiny, exp=quick, exp.max_steps=1]\n"
    ctx.error(
        _spec(ctx, f"name: x\n{common}axes: {{m: {{a/b: [], a__b: []}}}}\n"),
        "row `a__b` and row `a/b` map to one folder (a__b)",
        absent=("out",),
    )
    ctx.error(_spec(ctx, f"name: x\n{common}axes: {{m: {{A: [], a: []}}}}\n"), "row `a` and row `A`")


@case("runs: an experiment name or row that would write outside --out is refused")
def _(ctx: Context):
    ctx.error(
        _spec(ctx, "name: ../../escaped\naxes: {m: {a: []}}\n"),
        "experiment name `../../escaped` is not a plain folder name",
        absent=("escaped", "out"),
    )
    ctx.error(_spec(ctx, "name: x\naxes: {m: {'..': []}}\n"), "row `..`: `..` is not a plain folder name")


@case("runs: a full-ranking K beyond the catalogue ranks it once, under the name asked for")
def _(ctx: Context):
    from oncerec.train import full_ranking

    depths = []
    evaluate_top_k = full_ranking.evaluate_top_k

    def spy(found, held, names):
        depths.append(found.shape[1])
        return evaluate_top_k(found, held, names)

    ctx.monkeypatch.setattr(full_ranking, "evaluate_top_k", spy)
    m = _full_ranking(ctx, "hit@5000", "ndcg@5000", "recall@5000", "hit@298", "ndcg@298", "recall@298")
    assert m["full/items"] == 298 and depths == [298]  # never padded to 5000
    for kind in ("hit", "ndcg", "recall"):
        assert m[f"full/{kind}@5000"] == m[f"full/{kind}@298"]


@case("runs: a resumed run keeps its checkpoints beside stray step-* folders and resumes from its newest")
def _(ctx: Context):
    run = ctx.copy(ctx.run)
    root = run / "checkpoints"
    valid = root / "step-00000002"
    shutil.copytree(valid, root / "step-99999999")  # whole, but holds step 2: not this run's step 99999999
    shutil.copytree(valid, root / "step-abc")
    (root / "step-99999998").mkdir()
    (root / "step-99999998" / "notes.txt").write_text("mine")
    ctx.capsys.readouterr()
    assert main(_resume(run)) == 0
    out = ctx.capsys.readouterr().out
    assert f"resumed from {valid} (epoch 0, step 2)" in out
    assert f"skipping checkpoint {root / 'step-99999999'}: it holds step 2" in out
    for stray in ("step-abc", "step-99999998"):
        assert f"warning: {root / stray} is not a checkpoint of oncerec's (left alone" in out
    names = ["step-00000002", "step-00000004", "step-99999998", "step-99999999", "step-abc"]
    assert sorted(p.name for p in root.iterdir()) == names
    assert (root / "step-99999998" / "notes.txt").read_text() == "mine"
    for copy in ("step-99999999", "step-abc"):
        assert sorted(p.name for p in (root / copy).iterdir()) == sorted(p.name for p in valid.iterdir())


@case("runs: a full-ranking K of 20 digits is clamped to the catalogue")
def _(ctx: Context):
    m = _full_ranking(ctx, "hit@99999999999999999999", "hit@298")
    assert m["full/hit@99999999999999999999"] == m["full/hit@298"]


@case("runs: an experiment spec that is a scalar, or a list given as a string, is one line")
def _(ctx: Context):
    for text in ("42\n", "just a string\n"):
        ctx.error(_spec(ctx, text), "spec.yaml: an experiment spec is a mapping (name:, seeds:,")
    axes = "axes: {m: {a: []}}\n"
    ctx.error(
        _spec(ctx, f"common: data=demo-tiny exp=quick\n{axes}"),
        "spec.yaml: `common` is a YAML list ([a, b, ...]), not 'data=demo-tiny exp=quick'",
    )
    ctx.error(_spec(ctx, "axes: {m: {a: model=naml}}\n"), "`axes.m.a` is a YAML list")
    ctx.error(
        _spec(ctx, f"setup: [{{creates: raw, commands: demo-data raw}}]\n{axes}"),
        "`setup` is a list of steps {creates: PATH, commands: [[oncerec args...], ...]}: a path and a non-empty",
    )
    ctx.error(
        _spec(ctx, f"setup: [{{creates: raw, commands: [demo-data raw]}}]\n{axes}"),
        "each command of `setup` is a YAML list ([a, b, ...]), not 'demo-data raw'",
    )


@case("runs: resuming with another model or config than its checkpoints' is one line saying what to do")
def _(ctx: Context):
    run = ctx.copy(ctx.run)
    line = ctx.error(_resume(run, model="nrms"), f"cannot resume {run}: it holds a run (and checkpoints) of ")
    assert "model.name: 'naml' -> 'nrms'" in line and "or train into a new exp.out_dir" in line
    # the checkpoints of another config than config.yaml (weights of another size)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("hidden_size: 32", "hidden_size: 48"))
    line = ctx.error(
        _resume(run, "model.hidden_size=48"),
        f"cannot resume {run}: the weights in {run / 'checkpoints' / 'step-00000002'} are of another model",
    )
    assert "of another shape: " in line and "train into a new exp.out_dir" in line


@case("runs: a file in the place of checkpoints/ is one line")
def _(ctx: Context):
    run = ctx.copy(ctx.run)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("x\n")
    ctx.error(_resume(run), "checkpoints is a file, not the run's checkpoints folder; move it away")
    assert (run / "checkpoints").read_text() == "x\n"


# ----------------------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name: str, trained, tmp_path, monkeypatch, capsys):
    run, tiny = trained
    CASES[name](Context(tmp_path, run, tiny, monkeypatch, capsys))
