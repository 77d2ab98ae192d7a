"""Bad input, as a new user gives it: each case ends in one line `error: ...` naming the file or option and the
fix, exit code 2, no traceback, and nothing half-written. The list of cases is the test."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SMALL, assert_one_line_error, write_mind

from oncerec.cli import main


@dataclass
class Context:
    tmp: Path
    run: Path  # a trained run on demo-tiny
    tiny: Path  # demo-tiny's prepared dataset
    monkeypatch: pytest.MonkeyPatch

    def copy_of_tiny(self) -> Path:
        out = self.tmp / "tiny-copy"
        shutil.copytree(self.tiny, out)
        return out

    def copy_of_run(self) -> Path:
        out = self.tmp / "run-copy"
        shutil.copytree(self.run, out)
        return out

    def file(self, name: str, text: str = "x\n") -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path


def _train(c: Context, *extra: str) -> list[str]:
    out = f"exp.out_dir={c.tmp / 'run'}"
    return [
        "train",
        "data=demo-tiny",
        "model=naml",
        "exp=quick",
        *SMALL,
        "exp.max_steps=1",
        out,
        *extra,
        "--quiet",
    ]


def _truncated(c: Context) -> list[str]:
    data = c.copy_of_tiny()
    item = data / "train" / "item.npy"
    item.write_bytes(item.read_bytes()[:200])
    return _train(c, f"data={data}")


def _bad_manifest(c: Context) -> list[str]:
    data = c.copy_of_tiny()
    (data / "dataset.json").write_text("{not json")
    return ["stats", str(data)]


def _glove(c: Context) -> list[str]:
    glove = c.tmp / "glove.txt"
    words = json.loads((c.tiny / "vocab" / "word.json").read_text())
    glove.write_text(f"{words[2]} 0.1 0.2\n{words[3]} 0.3 zero\n")
    return _train(c, "embed=glove", f"embed.path={glove}", "embed.dim=2")


def _other_vocabulary(c: Context) -> list[str]:
    raw = write_mind(c.tmp / "mind")
    return ["evaluate", str(c.run), "--data", str(raw)]


def _unknown_config_key(c: Context) -> list[str]:
    run = c.copy_of_run()
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("model:\n", "model:\n  colour: blue\n", 1))
    return ["evaluate", str(run)]


def _corrupt_metrics(c: Context) -> list[str]:
    run = c.copy_of_run()
    (run / "metrics.json").write_text('{"test": {"auc": 0.5')
    return ["compare", str(run)]


def _spec(c: Context, text: str) -> list[str]:
    spec = c.file("spec.yaml", "name: s\ncommon: [data=demo-tiny]\n" + text)
    return ["experiment", str(spec), "--out", str(c.tmp / "exp")]


def _genre(c: Context, *extra: str) -> list[str]:
    return ["genre", "run", "summarize", "--data", str(c.tiny), "--store", str(c.tmp / "s.sqlite"), *extra]


def _refused(c: Context) -> list[str]:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    return _genre(
        c, "--base-url", url, "--model", "m", "--limit", "2", "--max-retries", "0", "--abort-after", "2"
    )


def _cache_is_a_file(c: Context) -> list[str]:
    c.monkeypatch.setenv("ONCEREC_CACHE", str(c.file("cache-file")))
    return _train(c)


# (id, argv builder, what the message must say, paths that must not exist afterwards)
CASES: list[tuple[str, Callable[[Context], list[str]], str, tuple[str, ...]]] = [
    ("out_dir is a file", lambda c: _train(c, f"exp.out_dir={c.file('f')}"), "is a file", ()),
    ("ONCEREC_CACHE is a file", _cache_is_a_file, "ONCEREC_CACHE=", ("run",)),
    ("prepare --out is a file", lambda c: ["prepare", str(write_mind(c.tmp / "m")), "--out", str(c.file("f")), "--quiet"], "--out", ()),
    ("genre merge --out is a file", lambda c: ["genre", "merge", "--data", str(c.tiny), "--out", str(c.file("f"))], "--out", ()),
    ("truncated dataset array", _truncated, "item.npy: not a readable array", ("run",)),
    ("dataset.json not JSON", _bad_manifest, "dataset.json: not valid JSON", ()),
    ("GloVe line with non-numbers", _glove, "glove.txt:2: 'zero' is not a number", ("run",)),
    ("score: missing file", lambda c: ["score", str(c.tmp / "nope.txt"), str(c.file("t"))], "nope.txt: file not found", ()),
    ("score: a folder", lambda c: ["score", str(c.tmp), str(c.file("t"))], "is a folder, not a file", ()),
    ("recommend --top-k -1", lambda c: ["recommend", str(c.run), "--history", "N10000", "--top-k", "-1"], "k=-1 (--top-k)", ()),
    ("recommend without user or history", lambda c: ["recommend", str(c.run)], "give a user id", ()),
    ("recommend --history <pad>", lambda c: ["recommend", str(c.run), "--history", "<pad>"], "unknown item ids in the history (--history): <pad>", ()),
    ("evaluate --data with another vocabulary", _other_vocabulary, "vocabulary differs", ()),
    ("run config.yaml with an unknown key", _unknown_config_key, "unknown key `model.colour`", ()),
    ("compare on a corrupt metrics.json", _corrupt_metrics, "metrics.json: not valid JSON", ()),
    ("experiment seeds: [x]", lambda c: _spec(c, "seeds: [x]\naxes: {m: {a: []}}\n"), "`seeds` is a non-empty list of integers", ("exp",)),
    ("experiment unknown split", lambda c: _spec(c, "split: tset\naxes: {m: {a: []}}\n"), "split `tset`", ("exp",)),
    ("experiment axes: []", lambda c: _spec(c, "axes: []\n"), "`axes` maps each axis name", ("exp",)),
    ("genre --limit -3", lambda c: _genre(c, "--limit", "-3"), "--limit -3: must be at least 0", ("s.sqlite",)),
    ("genre --concurrency 0", lambda c: _genre(c, "--concurrency", "0"), "--concurrency 0: must be at least 1", ("s.sqlite",)),
    ("genre --prompts missing", lambda c: _genre(c, "--prompts", str(c.tmp / "nope")), "--prompts", ("s.sqlite",)),
    ("genre connection refused", _refused, "connection refused by http://127.0.0.1:", ()),
]  # fmt: skip


@pytest.mark.parametrize(("build", "needle", "absent"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(trained, tmp_path, monkeypatch, capsys, build, needle, absent):
    run, tiny = trained
    argv = build(Context(tmp_path, run, tiny, monkeypatch))
    capsys.readouterr()
    assert_one_line_error(main(argv), capsys.readouterr().err, needle)
    for name in absent:
        assert not (tmp_path / name).exists(), f"{name} was written"
