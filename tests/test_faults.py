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

# 64 characters, as an OpenAI project key; mixed case, so that no 8 characters of it turn up in a hex hash
SECRET = "sk-proj-Zq8RfT2mWxKp4LnB7vHc9JdY3sGtQe6UaMiNo5PbXr1CyEwVkDlShFjA"
KEY_VARIABLE = "ONCEREC_FAULTS_KEY"


def _key_fragments_in(where: str, data: str | bytes) -> None:
    """Nothing of the key: not the key, not any 8 of its characters in a row."""
    data = data.encode() if isinstance(data, str) else data
    found = [SECRET[i : i + 8] for i in range(len(SECRET) - 7) if SECRET[i : i + 8].encode() in data]
    assert not found, f"{where} holds {found[0]!r}, part of the key"


def _no_key_in_files(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            _key_fragments_in(str(path), path.read_bytes())


def _genre_run(ctx: Context, url: str, store: Path, *extra: str) -> list[str]:
    return [
        *("genre", "run", "summarize", "--data", str(ctx.tiny), "--base-url", url, "--model", "m"),
        *("--store", str(store), "--api-key-env", KEY_VARIABLE, "--quiet", *extra),
    ]


@case("secrets: a key split by the cut of an error message (300) or of a non-JSON 2xx body (120) is masked")
def _(ctx: Context) -> None:
    from oncerec.genre.fake_server import FakeChatServer

    ctx.monkeypatch.setenv(KEY_VARIABLE, SECRET)
    # The key starts 50 characters before each cut ("." * N pads the quote): cut first, then scrubbed, 50 of
    # its 64 characters stayed on screen, in the store and in the export.
    quotes = ("quote_auth@226", "echo_auth@50")  # 226 + len("bad request from Bearer ") = 250; 50 + 20 = 70
    given: dict[str, str] = {}

    def faults(key: str, n: int) -> str:
        return given.setdefault(key, quotes[len(given) % 2])

    store = ctx.tmp / "store.sqlite"
    with FakeChatServer(faults=faults) as server:
        args = _genre_run(ctx, server.url, store, "--limit", "2", "--concurrency", "1", "--max-retries", "0")
        ctx.capsys.readouterr()
        assert main([*args, "--abort-after", "2"]) == 2  # both requests failed: the run stops, quoting one
        run = ctx.capsys.readouterr()
        assert main(["genre", "export", "--store", str(store), "--out", str(ctx.tmp / "all.jsonl")]) == 0
    assert f"Bearer {SECRET}" in server.authorization  # the key was sent
    exported = (ctx.tmp / "all.jsonl").read_text()
    assert "bad request from Bearer ***" in exported and "proxy: Bearer ***" in exported
    assert "Bearer ***" in run.err
    for where, text in [("stdout", run.out), ("stderr", run.err), ("export", exported)]:
        _key_fragments_in(where, text)
    _no_key_in_files(ctx.tmp)


@case("secrets: a key echoed in a valid answer is kept out of the store, genre export and merge")
def _(ctx: Context) -> None:
    import json

    import pyarrow.parquet as pq

    from oncerec.genre.fake_server import FakeChatServer, default_reply

    def reply(messages: list[dict]) -> str:  # the whole key, and a part of it, in a valid summary
        title = json.loads(default_reply(messages))["title"]
        return json.dumps({"title": f"{title} key={SECRET} part={SECRET[11:40]}"})

    ctx.monkeypatch.setenv(KEY_VARIABLE, SECRET)
    store, merged = ctx.tmp / "store.sqlite", ctx.tmp / "merged"
    with FakeChatServer(reply=reply) as server:
        assert main(_genre_run(ctx, server.url, store, "--limit", "5")) == 0
    assert main(["genre", "export", "--store", str(store), "--out", str(ctx.tmp / "all.jsonl")]) == 0
    merge = ["genre", "merge", "--data", str(ctx.tiny), "--store", str(store), "--out", str(merged)]
    assert main([*merge, "--tasks", "summarize"]) == 0
    printed = ctx.capsys.readouterr()
    summaries = [
        s for s in pq.read_table(merged / "items.parquet").column("summary").to_pylist() if "key=" in s
    ]
    assert len(summaries) == 5 and all(s.endswith(" key=*** part=***") for s in summaries)
    records = [json.loads(line) for line in (ctx.tmp / "all.jsonl").read_text().splitlines()]
    assert [r["output"]["title"].endswith("key=*** part=***") for r in records] == [True] * 5
    for where, text in [
        ("stdout", printed.out),
        ("stderr", printed.err),
        ("summaries", "\n".join(summaries)),
    ]:
        _key_fragments_in(where, text)
    _no_key_in_files(ctx.tmp)  # the store, the export, every file of the merged dataset


# -------------------------------------------------------------------------------------- serving and export


# ---------------------------------------------------------------------------------------- GENRE import


# ------------------------------------------------------------------------------------ readers and datasets


# ------------------------------------------------------------------------ experiments, evaluation, resume


# ----------------------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name: str, trained, tmp_path, monkeypatch, capsys):
    run, tiny = trained
    CASES[name](Context(tmp_path, run, tiny, monkeypatch, capsys))
