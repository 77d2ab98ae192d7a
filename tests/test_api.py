"""The Python API (`oncerec.train`, `load_run`, `Run.evaluate / recommend / export`, `prepare`, `presets`) and
the commands built on it: `oncerec demo` ends with commands to try, and they run as printed."""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import SMALL, write_mind

import oncerec
import oncerec.api
from oncerec.cli import main
from oncerec.errors import ConfigError, OncerecError
from oncerec.run import Recommendation, Run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("api") / "nrms"
    return oncerec.train(
        data="demo-tiny",
        model="nrms",
        exp="quick",
        overrides=[*SMALL, "exp.max_steps=3"],
        out_dir=out,
        progress=False,
    )


@pytest.mark.integration
def test_train_returns_the_run_with_its_metrics(run):
    assert oncerec.train is oncerec.api.train  # the function, not the package of the trainer
    assert run.run_dir.is_dir() and (run.run_dir / "metrics.json").is_file()
    assert set(run.metrics) == {"valid", "test"} and 0 < run.metrics["test"]["auc"] < 1
    assert run.cfg.model.name == "nrms" and run.cfg.model.hidden_size == 32


def test_load_run_evaluates_as_training_did(run):
    loaded = oncerec.load_run(run.run_dir)
    assert loaded.evaluate("test")["auc"] == pytest.approx(run.metrics["test"]["auc"], abs=1e-6)
    full = loaded.evaluate("test", full_ranking=["recall@5", "hit@5"])
    assert {"full/recall@5", "full/hit@5"} <= set(full)
    with pytest.raises(OncerecError, match="--full-ranking"):
        loaded.evaluate("test", full_ranking=["recall@x"])


def test_recommend_for_a_user_and_for_a_history(run):
    ids = run.dataset.items_table.column("id").to_pylist()
    user = run.dataset.vocab("user")[1]
    top = run.recommend(user=user, k=5)
    assert len(top) == 5 and all(isinstance(r, Recommendation) for r in top)
    assert [r.score for r in top] == sorted((r.score for r in top), reverse=True)
    history = ids[1:4]
    without = run.recommend(history=history, k=len(ids))
    assert not {r.id for r in without} & set(history) and len(without) == len(ids) - 1 - 3
    within = run.recommend(history=history, k=len(ids), exclude_history=False)
    assert set(history) <= {r.id for r in within}
    with pytest.raises(OncerecError, match="give a user id"):
        run.recommend()


def test_export_writes_what_serve_loads(run, tmp_path):
    pytest.importorskip("faiss")
    from oncerec.serve.service import Service

    manifest = run.export(tmp_path / "export", index="hnsw", ef_search=64, progress=False)
    assert manifest["index"] == {"kind": "hnsw", "search": {"ef_search": 64}}
    service = Service(tmp_path / "export")
    history = run.dataset.items_table.column("id").to_pylist()[1:3]
    expected = [r.id for r in run.recommend(history=history, k=5)]
    assert [i for i, _ in service.recommend(history, None, 5).items] == expected


def test_prepare_presets_and_config(tmp_path):
    ds = oncerec.prepare(write_mind(tmp_path / "mind"), out=tmp_path / "ds", progress=False)
    assert ds.root == tmp_path / "ds" and ds.stats["items"] == 5
    assert {"nrms", "naml", "llm-nrms"} <= set(oncerec.presets("model"))
    assert "once-demo" in oncerec.presets("experiment")
    cfg = oncerec.make_config(
        data="demo-tiny", model="naml", overrides={"model.item_fields": ["title", "category"]}
    )
    assert cfg.model.item_fields == ["title", "category"]
    with pytest.raises(ConfigError, match="unknown key `model.colour`"):
        oncerec.make_config(model="nrms", overrides={"model.colour": "blue"})


@contextmanager
def _no_logging_configured() -> Iterator[None]:
    """The root logger as a script has it, without a handler (pytest's capture handlers set aside meanwhile)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    for handler in saved:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)


def test_a_call_prints_what_the_command_prints_unless_the_caller_configured_logging(
    run, mind_dir, tmp_path, capsys
):
    with _no_logging_configured():
        assert main(["prepare", str(mind_dir), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
        command = capsys.readouterr().out
        oncerec.prepare(mind_dir, out=tmp_path / "api", progress=False)
        lines = capsys.readouterr().out
        assert lines.startswith("read 5 items\n") and command.startswith(
            lines
        )  # the command then adds the stats
        assert "export: building the flat index" in _export(run, tmp_path / "e1", capsys, progress=True)
        assert _export(run, tmp_path / "e2", capsys, progress=False) == ""  # as `oncerec export --quiet`
        # a handler of the caller's own: every record goes there, at the levels the caller set; none printed
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger().addHandler(handler)
        oncerec_logger = logging.getLogger("oncerec")
        oncerec_logger.setLevel(logging.INFO)
        try:
            oncerec.prepare(mind_dir, out=tmp_path / "mine", progress=False)
        finally:
            oncerec_logger.setLevel(logging.NOTSET)
        assert capsys.readouterr().out == ""
        assert [r.getMessage() for r in records] == lines.splitlines()
        assert {r.name for r in records} == {"oncerec.data.prepare"}


def _export(run, out, capsys, progress: bool) -> str:
    pytest.importorskip("faiss")
    run.export(out, progress=progress)
    return capsys.readouterr().out


def test_import_oncerec_is_cheap():
    code = "import sys, oncerec; oncerec.presets('exp'); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"oncerec {oncerec.__version__}"


def test_presets_command_lists_each_with_its_description(capsys):
    assert main(["presets", "exp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "exp (exp=NAME):"
    assert any(line.split()[0] == "quick" and "one short epoch" in line for line in lines[1:])


def test_demo_prints_next_commands_that_run_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["demo", "--scale", "tiny", "--quiet", "exp.max_steps=2", f"exp.out_dir={tmp_path / 'demo'}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "closes" in out and "of the AUC gap between random (0.5) and the oracle" in out
    steps = out.split("\nnext:\n")[1].splitlines()
    assert steps[0].startswith("  oncerec evaluate ") and any(" --user U" in s for s in steps)
    for line in steps:
        argv = shlex.split(line.split("#")[0])
        if argv[:2] in (["oncerec", "serve"], ["oncerec", "presets"]) or argv[0] == "curl":
            continue  # the server and its call: tests/test_serve.py; presets: above
        if argv[1] == "export":
            pytest.importorskip("faiss")
        assert main(argv[1:]) == 0, line
    printed = capsys.readouterr().out
    assert '"auc"' in printed and "  1. " in printed and "export: exports/demo" in printed


def test_a_missing_extra_is_named_and_curves_are_optional(monkeypatch, tmp_path):
    import importlib.util

    from oncerec.serve import require_packages
    from oncerec.training.report import plot_curves

    find = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("faiss", "matplotlib") else find(name, *a),
    )
    with pytest.raises(OncerecError, match=r"serving needs faiss-cpu: pip install 'oncerec\[serve\]'"):
        require_packages()
    assert plot_curves(tmp_path / "log.jsonl", tmp_path / "curves.png", ["auc"]) is False
    assert not (tmp_path / "curves.png").exists()


def test_config_show_prints_each_resolved_key_with_its_meaning(capsys):
    assert main(["config", "show", "data=demo-tiny", "model=nrms", "exp.lr=1e-4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    exp = lines[lines.index("exp:") :]
    assert any(line.startswith("  lr: 0.0001  # ") for line in exp)
    assert "  item: attention  # " in "\n".join(lines)  # the preset's choice, resolved
    assert all(len(line.split("  # ", 1)[1]) <= 100 for line in lines if "  # " in line)
    assert main(["config", "show", "model.colour=blue"]) == 2
    assert "unknown key `model.colour`" in capsys.readouterr().err


def test_train_help_lists_the_presets_and_where_the_keys_are(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "  model: autoint, bert-naml," in out and "  exp: default, demo, once-llm, quick" in out
    assert "oncerec config show" in out
