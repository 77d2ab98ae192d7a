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
from oncerec.training.pipeline import train

QUIET = {"progress": False}


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
INTEGRATION: set[str] = set()  # the cases that start a server or a process: run by `pytest -m integration`


def case(
    name: str, integration: bool = False
) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    def add(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        assert name not in CASES, name
        CASES[name] = fn
        if integration:
            INTEGRATION.add(name)
        return fn

    return add


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
    from tests.fake_openai import FakeChatServer

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

    from tests.fake_openai import FakeChatServer, default_reply

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


@case("secrets: genre import --store of another application's SQLite file is refused before writing to it")
def _(ctx: Context) -> None:
    import sqlite3

    other = ctx.tmp / "other-app.db"
    db = sqlite3.connect(other)
    with db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users VALUES (1, 'ada')")
    db.close()
    before = other.read_bytes()
    log = ctx.file("news_summarizer.log", f"{_tiny_items(ctx)[1]}\t[newtitle] A new title\n")
    ctx.error(
        [*_import(ctx, "summarize", log), "--store", str(other)],
        f"{other} is not a GENRE response store (an SQLite database with the tables users)",
        absent=("other-app.db-wal", "other-app.db-shm"),
    )
    assert other.read_bytes() == before


def _tiny_items(ctx: Context) -> list[str]:
    from oncerec.data.dataset import Dataset

    return Dataset(ctx.tiny).items_table.column("id").to_pylist()


def _import(ctx: Context, task: str, log: Path) -> list[str]:
    """`genre import` of `log` into demo-tiny (add --store: the default is the shared dataset's own store)."""
    return ["genre", "import", "--data", str(ctx.tiny), "--task", task, "--log", str(log), "--quiet"]


# -------------------------------------------------------------------------------------- serving and export


def _export(ctx: Context, *options: str) -> Path:
    """The export of `ctx.run` (made once per module, beside the run; copy it with `ctx.copy` to change it)."""
    out = ctx.run.parent / ("export" + "".join(options).replace("-", "_"))
    if not out.is_dir():
        assert main(["export", str(ctx.run), "--out", str(out), "--quiet", *options]) == 0
    return out


def _item_ids(ctx: Context) -> list[str]:
    import json

    return json.loads((_export(ctx) / "data" / "ids.json").read_text())


@case("serve: exclude_history leaves out every item given, not only the last history_len", integration=True)
def serve_excludes_every_item_given(ctx: Context) -> None:
    from oncerec.serve.service import Service
    from oncerec.training.session import load_run

    history = _item_ids(ctx)[1:61]  # more than the encoder reads (history_len 50)
    run = load_run(ctx.run)
    assert run.dataset.history_len < len(history)
    left = 298 - len(history)
    served = [i for i, _ in Service(_export(ctx)).recommend(history, None, 1000).items]
    ranked = [i for i, _, _ in run.recommend("", history, 1000)]
    ctx.capsys.readouterr()
    assert main(["recommend", str(ctx.run), "--history", ",".join(history), "--top-k", "1000"]) == 0
    printed = [line.split()[2] for line in ctx.capsys.readouterr().out.splitlines()]
    for found in (served, ranked, printed):
        assert len(found) == left and not set(found) & set(history)
    assert served == ranked == printed


def _http(service):
    """The service's HTTP app, called in this process (no server)."""
    from starlette.testclient import TestClient

    from oncerec.serve.app import create_app

    return TestClient(create_app(service))


@case("serve: /recommend with an approximate index gives k items, or says how many and why", integration=True)
def serve_approximate_index_gives_k_items(ctx: Context) -> None:
    from oncerec.serve.service import Service

    history = _item_ids(ctx)[1:6]
    exact = {i for i, _ in Service(_export(ctx)).recommend(history, None, 1000).items}
    assert len(exact) == 298 - 5
    for index in ("hnsw", "ivf"):  # hnsw's walk found 269 of them
        http = _http(Service(_export(ctx, "--index", index)))
        answer = http.post("/recommend", json={"history": history, "k": 1000}).json()
        assert {x["id"] for x in answer["items"]} == exact and len(answer["items"]) == len(exact), index
        assert answer["note"] == (
            "293 items, not k=1000: the service holds 298 items, 5 of them in the history and left out "
            "(exclude_history)"
        )
        assert "note" not in http.post("/recommend", json={"history": history, "k": 293}).json()
        assert http.post("/recommend", json={"k": 1000}).json()["note"] == (
            "298 items, not k=1000: the service holds 298 items"
        )
    # a two-stage model re-ranks at least k candidates, not `--candidates` of them
    dnn = ctx.tmp / "dnn"
    cfg = build_config(
        ["data=demo-tiny", "model=dnn", "exp=quick", *SMALL, "exp.max_steps=1", f"exp.out_dir={dnn}"]
    )
    train(cfg, **QUIET)
    assert main(["export", str(dnn), "--out", str(ctx.tmp / "dnn-export"), "--quiet"]) == 0
    two = Service(ctx.tmp / "dnn-export", candidates=20)
    assert len(two.recommend(history, None, 100).items) == 100


@case("serve: POST /items refuses an item with no token the model reads")
def serve_refuses_items_without_content(ctx: Context) -> None:
    from oncerec.serve.service import Service

    service = Service(_export(ctx))
    http = _http(service)
    empty = [
        {"title": "  \t "},
        {"title": "!!! ... ?!", "abstract": " -- "},
        {"category": "no-such-category"},
    ]
    for content in empty:
        r = http.post(
            "/items", json={"items": [{"id": "N-ok", "title": "A title"}, {"id": "N-empty", **content}]}
        )
        assert (r.status_code, r.json().get("field")) == (422, "items[1]"), content
        assert r.json()["error"].startswith(
            "nothing the model reads in title, abstract, category, subcategory"
        )
    assert http.get("/health").json()["items"] == 298  # nothing of a refused request was added
    word = service.export.data.vocab("word")[5]
    known = service.export.data.vocab("category")[1]
    for content in ({"title": f"!!! {word} ..."}, {"title": "zyxqv ?"}, {"category": known}):
        assert http.post("/items", json={"items": [{"id": "N-ok", **content}]}).status_code == 200


def _serve_cli(*args: str, timeout: float = 90) -> tuple[int, str]:
    """`oncerec serve ARGS` in a child process of its own session (its exit status and stderr), the whole
    session killed at the end: what it started must not outlive a failed check."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "oncerec.cli", "serve", *args]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = process.communicate(timeout=timeout)
        return process.returncode, err
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@case(
    "serve: the workers of a killed serve die with it, and a port already served is refused", integration=True
)
def serve_workers_die_with_serve(ctx: Context) -> None:
    import contextlib

    import psutil

    from benchmarks.serve import ServerProcess
    from oncerec.errors import OncerecError

    server = ServerProcess(_export(ctx), "--workers", "2", timeout=300)
    workers = psutil.Process(server.process.pid).children()
    try:
        # a second serve on the port (with SO_REUSEPORT it listened beside the first, splitting its traffic)
        for workers_option in ("2", "1"):
            code, err = _serve_cli(str(_export(ctx)), "--port", str(server.port), "--workers", workers_option)
            assert code == 2, err
            assert err.strip().splitlines()[-1] == (
                f"error: cannot listen on 127.0.0.1:{server.port}: Address already in use (another server "
                "listens there): stop it or give another --port"
            )
        server.kill()  # kill -9: no clean-up of any kind
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        for p in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    # two serves starting at once (both find the port free while their workers load): the second is refused
    from oncerec.serve.app import _claim

    with _claim("127.0.0.1", server.port), pytest.raises(OncerecError, match="another `oncerec serve`"):
        _claim("127.0.0.1", server.port)


@case("serve: /health and the /metrics item gauge count the items another worker added")
def serve_health_counts_every_workers_items(ctx: Context) -> None:
    from oncerec.serve.service import Service

    export = ctx.copy(_export(ctx))
    a, b = Service(export, persist=True), Service(export, persist=True)  # two workers of one serve
    assert (
        a.add_items([{"id": "N-a", "title": "Added through one worker", "category": "news"}])["items"] == 299
    )
    http = _http(b)
    assert http.get("/health").json()["items"] == 299
    assert "\noncerec_index_items 299.0\n" in http.get("/metrics").text


@case("serve: an export whose files disagree with its manifest is refused when it opens, not served")
def serve_checks_sizes_against_the_manifest(ctx: Context) -> None:
    import numpy as np

    from oncerec.errors import OncerecError
    from oncerec.serve.service import Service

    def shorter(path: Path) -> None:
        np.save(path, np.load(path)[:100])

    damages = {  # file: (damage, what the error says)
        "popularity.npy": (shorter, "shape (100,) where the export needs (299,)"),  # served scores of 0
        "data/items/word/title.npy": (shorter, "shape (100, 30) where the export needs (299, ...)"),
        "data/train_users.npy": (shorter, "shape (100,) where the export needs (124,)"),
        "vectors.npy": (lambda p: p.write_bytes(p.read_bytes()[:1000]), "not a readable array"),
        "data/ids.json": (lambda p: p.write_text('["N1"]'), "1 ids, the manifest has 299"),
    }
    for n, (name, (damage, needle)) in enumerate(damages.items()):
        export = ctx.copy(_export(ctx), f"export-{n}")
        damage(export / name)
        with pytest.raises(OncerecError) as refused:
            Service(export)
        assert str(refused.value).startswith(f"{export / name}: {needle}") and "export the run again" in str(
            refused.value
        )


def _read_only(ctx: Context, folder: Path) -> None:
    """Makes `folder` read-only. Tests may run as root, who writes in any folder whatever its mode: then the
    check the code makes, `os.access`, is told what it tells any other user (the code path is the same)."""
    import os

    folder.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access

        def access(path, mode, *args, **kwargs) -> bool:
            if mode & os.W_OK and Path(path).absolute() == folder.absolute():
                return False
            return real(path, mode, *args, **kwargs)

        ctx.monkeypatch.setattr(os, "access", access)


def _never_serve(ctx: Context) -> None:
    """A `serve` in this process that wrongly gets past its checks fails the test rather than serving until
    the test times out."""
    import uvicorn

    def served(*_, **__) -> None:
        raise AssertionError("serve got past its checks and served")

    ctx.monkeypatch.setattr(uvicorn.Server, "run", served)


@case(
    "serve: --port out of range is refused in one line, and --port 0 prints the port it bound",
    integration=True,
)
def serve_port_checks(ctx: Context) -> None:
    import contextlib
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    import httpx

    for port in ("99999", "-1"):
        ctx.error(["serve", str(_export(ctx)), "--port", port], f"--port {port}: give a port from 1 to 65535")
    command = [sys.executable, "-m", "oncerec.cli", "serve", str(_export(ctx)), "--port", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = process.stderr.readline()
        port = int(re.fullmatch(r"serving \S+ on http://127\.0\.0\.1:(\d+) \(1 worker\)\n", line).group(1))
        assert port > 0, line
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                assert httpx.get(f"http://127.0.0.1:{port}/health").json()["items"] == 298
                return
            time.sleep(0.5)
        raise AssertionError(f"nothing answered on port {port}")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@case("serve: export --out under a file, serve of a read-only run folder: one line naming the folder")
def serve_export_folders(ctx: Context) -> None:
    parent = ctx.file("a-file")
    ctx.error(["export", str(ctx.run), "--out", str(parent / "export")], f"{parent} is a file, not a folder")
    run = ctx.copy(ctx.run, "read-only-run")
    _read_only(ctx, run)
    _never_serve(ctx)
    ctx.error(
        ["serve", str(run), "--port", "0"],
        f"serve {run} exports the run to {run / 'export'} on first use: {run} is read-only; export it "
        f"elsewhere (`oncerec export {run} --out DIR`) and serve DIR",
    )


@case("serve: a damaged export is refused in one line naming the file, not a traceback")
def serve_damaged_export(ctx: Context) -> None:
    import json

    def without_items(path: Path) -> None:
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "items"}))

    damages = {  # file: (damage, what the error says of it)
        "model.safetensors": (lambda p: p.write_bytes(b"garbage" * 10), "not readable weights"),
        "config.yaml": (lambda p: p.write_text("model: [unclosed\n"), "invalid YAML"),
        "export.json": (without_items, "`items` missing or not valid"),
        "data/ids.json": (Path.unlink, "missing from the export"),
        "popularity.npy": (Path.unlink, "missing from the export"),
        "vectors.npy": (lambda p: p.write_bytes(p.read_bytes()[:1000]), "not a readable array"),
    }
    _never_serve(ctx)
    for n, (name, (damage, needle)) in enumerate(damages.items()):
        export = ctx.copy(_export(ctx), f"export-{n}")
        damage(export / name)
        line = ctx.error(["serve", str(export), "--port", "0"], f"{export / name}: {needle}")
        assert line.endswith("export the run again (`oncerec export RUN_DIR --out DIR`)"), line


@case(
    "serve: an added-items store it cannot use is refused at start, and one found damaged later is a 503",
    integration=True,
)
def serve_added_items_store(ctx: Context) -> None:
    import json
    import sqlite3

    from oncerec.serve.service import Service

    export = ctx.copy(_export(ctx))
    parent = ctx.file("a-file")
    _never_serve(ctx)
    serve = ["serve", str(export), "--port", "0"]
    ctx.error([*serve, "--added-dir", str(parent / "added")], f"{parent} is a file, not a folder")
    ctx.error(
        [*serve, "--persist", "--added-dir", str(parent)],
        f"--persist: --added-dir {parent}: {parent} is a file, not a folder",
    )
    store = export / "added" / "items.sqlite"
    Service(export, persist=True).add_items([{"id": "N-x", "title": "A title"}])
    with sqlite3.connect(store) as db:  # an object, not a list of items
        db.execute("""UPDATE requests SET items = '{"id": "N-x"}' WHERE seq = 1""")
    needle = f"{store}: damaged added items (request 1: not a list of items"
    ctx.error(serve, needle)
    ctx.error([*serve, "--workers", "2"], needle)  # said by serve, not in a worker's traceback
    store.write_bytes(b"x" * 4096)
    ctx.error([*serve, "--persist"], f"{store}: damaged added items (not an SQLite file)")
    other = ctx.copy(_export(ctx), "other-weights")
    manifest = json.loads((other / "export.json").read_text())
    (other / "export.json").write_text(json.dumps(manifest | {"weights_sha256": "0" * 64}))
    shutil.rmtree(export / "added")
    Service(export, persist=True).add_items([{"id": "N-x", "title": "A title"}])
    ctx.error(
        ["serve", str(other), "--port", "0", "--added-dir", str(export / "added")],
        f"{store}: items added to an export of other weights",
    )
    # the folders of an older oncerec: refused, with how to re-add their items
    shutil.rmtree(export / "added")
    (export / "added" / "00000001").mkdir(parents=True)
    (export / "added" / "LAST").write_text("00000001")
    ctx.error(
        serve, f"{export / 'added'}: items added by an older oncerec (one folder per request: 00000001, LAST)"
    )
    shutil.rmtree(export / "added")
    read_only = ctx.copy(_export(ctx), "read-only-export")
    _read_only(ctx, read_only)
    ctx.error(
        ["serve", str(read_only), "--persist", "--port", "0"],
        f"--persist: the added-items folder {read_only / 'added'}: {read_only} is read-only; give "
        "--added-dir DIR on a writable disk",
    )
    # damaged by another process after the start: every request says so (it was a bare 500, /health ok)
    http = _http(Service(export))
    Service(export, persist=True).add_items([{"id": "N-x", "title": "A title"}])
    with sqlite3.connect(store) as db:
        db.execute("UPDATE requests SET vectors = x'00' WHERE seq = 1")
    for response in (http.post("/recommend", json={"history": [_item_ids(ctx)[1]]}), http.get("/health")):
        assert response.status_code == 503 and response.json()["field"] == "service"
        assert response.json()["error"].startswith(
            f"{store}: damaged added items (request 1: vectors of 1 bytes"
        )


@case("serve: a 422 for unknown ids names them cut, and how many there are")
def serve_unknown_ids_cut(ctx: Context) -> None:
    from oncerec.serve.service import Service

    http = _http(Service(_export(ctx)))
    huge = "x" * 1_000_000
    response = http.post("/recommend", json={"history": [huge, _item_ids(ctx)[1], "N-nowhere"]})
    assert response.status_code == 422 and len(response.content) < 2000
    body = response.json()
    assert body["error"] == f"2 unknown item ids: {'x' * 100}…, N-nowhere"
    assert body["unknown"] == ["x" * 100 + "…", "N-nowhere"] and body["unknown_count"] == 2


# ---------------------------------------------------------------------------------------- GENRE import


@case("genre: a summarizer log keyed by item index, not id, is refused (most ids unknown) unless allowed")
def _(ctx: Context) -> None:
    items = _tiny_items(ctx)
    # line numbers 0..N-1 instead of ids; two ids that exist stand for the indexes that happen to be ids too
    lines = [f"{i}\t[newtitle] Title number {i}" for i in range(len(items))]
    lines += [f"{items[1]}\t[newtitle] A real one", f"{items[2]}\t[newtitle] Another real one"]
    log = ctx.file("news_summarizer.log", "".join(line + "\n" for line in lines))
    args = [*_import(ctx, "summarize", log), "--store", str(ctx.tmp / "store.sqlite")]
    n = len(items)
    ctx.error(
        args,
        f"{n:,} of its {n + 2:,} ids are not in the dataset (e.g. `0`, `1`, `2`): likely the ids are the "
        f"integers 0..{n - 1}, as line numbers of a vocabulary are: give it with --vocab (tok.nid.dat or "
        "tok.bid.dat); if the log is about a larger dataset, --allow-unknown-ids imports the answers of the "
        "2 known ids",
        absent=("store.sqlite",),
    )
    assert main([*args, "--allow-unknown-ids"]) == 0
    assert f"2 imported, 0 invalid, {n:,} ids not in the dataset" in ctx.capsys.readouterr().out


@case("genre: an import that stores nothing (another --vocab than the ids', an empty log) is an error")
def _(ctx: Context) -> None:
    items = _tiny_items(ctx)[1:]
    # a profiler log read through the items' vocabulary (tok.bid.dat for tok.uid.dat): every uid an item id
    vocab = ctx.file("tok.nid.dat", "".join(f"{i}\n" for i in items))
    log = ctx.file(
        "user_profiler.log", "".join(f'{{"uid": {u}, "interest": "[topics]\\n- health"}}\n' for u in range(4))
    )
    args = [*_import(ctx, "profile", log), "--vocab", str(vocab), "--store", str(ctx.tmp / "store.sqlite")]
    for extra in ([], ["--allow-unknown-ids"]):
        ctx.error(
            [*args, *extra],
            f"4 of its 4 ids are not in the dataset (e.g. `{items[0]}`, `{items[1]}`, `{items[2]}`): nothing "
            f"to import; the ids were read as line numbers of --vocab {vocab}: give the vocabulary of these ids "
            "(tok.uid.dat)",
            absent=("store.sqlite",),
        )
    empty = ctx.file("empty.log", "\n\n")
    ctx.error(
        [*_import(ctx, "profile", empty), "--store", str(ctx.tmp / "store.sqlite")],
        f"{empty}: no answer could be imported: empty.log -> profile (import:gpt-3.5-turbo, prompt "
        "once-release:empty): 0 lines read",
        absent=("store.sqlite",),
    )


@case("genre: summaries imported with --domain books into a MIND dataset merge as book descriptions")
def _(ctx: Context) -> None:
    import json

    import pyarrow.parquet as pq

    items = _tiny_items(ctx)
    store, merged = ctx.tmp / "store.sqlite", ctx.tmp / "merged"
    log = ctx.file("book_summarizer.log", f"{items[1]}\t[description] A long tale of two cities and a war.\n")
    assert main([*_import(ctx, "summarize", log), "--domain", "books", "--store", str(store)]) == 0
    merge = ["genre", "merge", "--data", str(ctx.tiny), "--store", str(store), "--tasks", "summarize"]
    ctx.capsys.readouterr()
    assert main([*merge, "--out", str(merged)]) == 0
    out = ctx.capsys.readouterr().out
    report = json.loads(out[out.index("\n{") :])["summarize"]  # after the log lines
    assert (report["generated"], report["fallback_is"]) == (1, "the original description, else the title")
    summaries = pq.read_table(merged / "items.parquet").column("summary").to_pylist()
    assert summaries[1] == "A long tale of two cities and a war."
    # news titles in the same store too: merge does not guess which to take
    news = ctx.file("news_summarizer.log", f"{items[2]}\t[newtitle] A news title\n")
    assert main([*_import(ctx, "summarize", news), "--store", str(store)]) == 0
    ctx.error(
        [*merge, "--out", str(ctx.tmp / "mixed")],
        "the summaries are of both domains (news titles and book descriptions): merge those of one model",
        absent=("mixed",),
    )


@case("genre: a summarizer log with CR-only line ends is one answer a line")
def _(ctx: Context) -> None:
    from oncerec.genre.store import Store

    a, b = _tiny_items(ctx)[1:3]
    log = ctx.tmp / "news_summarizer.log"
    log.write_bytes(f"{a}\t[newtitle] First title\r{b}\t[newtitle] Second title\r".encode())
    store = ctx.tmp / "store.sqlite"
    assert main([*_import(ctx, "summarize", log), "--store", str(store)]) == 0
    assert "2 lines read: 2 imported" in ctx.capsys.readouterr().out
    done, _ = Store(store, readonly=True).latest("summarize")
    assert {t: r.output for t, r in done.items()} == {
        a: {"title": "First title"},
        b: {"title": "Second title"},
    }


@case("genre: import with a binary --vocab is one line naming --vocab")
def _(ctx: Context) -> None:
    vocab = ctx.tmp / "tok.uid.npy"
    vocab.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<i8'}" + bytes(64))
    log = ctx.file("user_profiler.log", '{"uid": 0, "interest": "[topics]\\n- health"}\n')
    ctx.error(
        [*_import(ctx, "profile", log), "--vocab", str(vocab), "--store", str(ctx.tmp / "store.sqlite")],
        f"--vocab {vocab}: not UTF-8 text (invalid start byte at byte 0); give the vocabulary",
        absent=("store.sqlite",),
    )


@case("genre: --store that is a text file, a folder, Parquet or another app's DB with `meta` is refused")
def _(ctx: Context) -> None:
    import sqlite3

    import pyarrow as pa
    import pyarrow.parquet as pq

    text = ctx.file("notes.txt", "my notes\n")
    folder = ctx.tmp / "answers"
    folder.mkdir()
    parquet = ctx.tmp / "items.parquet"
    pq.write_table(pa.table({"id": ["N1"]}), parquet)
    other = ctx.tmp / "other.db"
    db = sqlite3.connect(other)
    with db:
        db.execute("CREATE TABLE meta (name TEXT, value TEXT, since REAL)")
    db.close()
    log = ctx.file("news_summarizer.log", f"{_tiny_items(ctx)[1]}\t[newtitle] A new title\n")
    refused = "is not a GENRE response store"
    for store, needle in [
        (text, f"{text} {refused} (not an SQLite file)"),
        (folder, f"{folder} is a folder, not a GENRE response store: give --store a file"),
        (parquet, f"{parquet} {refused} (a Parquet file)"),
        (other, f"{other} {refused} (an SQLite database with the tables meta)"),
    ]:
        before = {p: p.read_bytes() for p in ctx.tmp.rglob("*") if p.is_file()}
        ctx.error([*_import(ctx, "summarize", log), "--store", str(store)], needle)
        assert {p: p.read_bytes() for p in ctx.tmp.rglob("*") if p.is_file()} == before


@case("genre: a store locked by another process is one line after the wait (busy_timeout set first)")
def _(ctx: Context) -> None:
    import sqlite3
    import time

    from oncerec.genre import store as store_module

    store = ctx.tmp / "store.sqlite"
    log = ctx.file("news_summarizer.log", f"{_tiny_items(ctx)[1]}\t[newtitle] A new title\n")
    assert main([*_import(ctx, "summarize", log), "--store", str(store)]) == 0
    # the wait, shortened for the test (raising=False: the code before the fix had no such setting)
    ctx.monkeypatch.setattr(store_module, "LOCK_WAIT_S", 0.5, raising=False)
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing the store
    try:
        other = ctx.file("news_summarizer.log", f"{_tiny_items(ctx)[2]}\t[newtitle] Another title\n")
        started = time.perf_counter()
        ctx.error(
            [*_import(ctx, "summarize", other), "--store", str(store)],
            f"{store} is locked: another process is writing it (waited 0.5 s)",
        )
        assert 0.5 <= time.perf_counter() - started < 4  # our wait, not SQLite's default 5 s
    finally:
        holder.close()


@case("genre: a read-only store is one line saying so (import, merge, export)")
def _(ctx: Context) -> None:
    import sqlite3

    store = ctx.tmp / "store.sqlite"
    log = ctx.file("news_summarizer.log", f"{_tiny_items(ctx)[1]}\t[newtitle] A new title\n")
    assert main([*_import(ctx, "summarize", log), "--store", str(store)]) == 0
    connect = sqlite3.connect

    # Tests may run as root, which writes any file: the connections are made to behave as SQLite's do.
    # A write-protected file: SQLite opens it read-only (as `mode=ro` does), and refuses the first write.
    def write_protected(database, *args, **kw):
        database = (
            str(database).replace("mode=rwc", "mode=ro") if kw.get("uri") else f"file:{database}?mode=ro"
        )
        return connect(database, *args, **{**kw, "uri": True})

    ctx.monkeypatch.setattr(sqlite3, "connect", write_protected)
    again = ctx.file("again.log", f"{_tiny_items(ctx)[2]}\t[newtitle] Another title\n")
    ctx.error(
        [*_import(ctx, "summarize", again), "--store", str(store)],
        f"{store} is read-only: SQLite writes a store in WAL mode only where it may write store.sqlite-wal",
    )

    # A read-only folder: SQLite cannot create store.sqlite-shm beside it, and refuses the first read with
    # SQLITE_READONLY_DIRECTORY ("attempt to write a readonly database", as seen running as a user).
    class ReadOnlyFolder(sqlite3.Connection):
        def execute(self, *args):
            error = sqlite3.OperationalError("attempt to write a readonly database")
            error.sqlite_errorname = "SQLITE_READONLY_DIRECTORY"
            raise error

    ctx.monkeypatch.setattr(
        sqlite3, "connect", lambda *args, **kw: connect(*args, **kw, factory=ReadOnlyFolder)
    )
    for argv, out in [
        (["genre", "merge", "--data", str(ctx.tiny), "--store", str(store)], "merged"),
        (["genre", "export", "--store", str(store)], "all.jsonl"),
    ]:
        ctx.error(
            [*argv, "--out", str(ctx.tmp / out)],
            f"{store} is read-only: SQLite reads a store in WAL mode only where",
            absent=(out,),
        )


# ------------------------------------------------------------------------------------ readers and datasets


def _data_prepare(ctx: Context, raw: Path, fmt: str, *overrides: str) -> list[str]:
    """`oncerec prepare` of `raw` into tmp/ds (an argv for ctx.error or main)."""
    return ["prepare", str(raw), "--out", str(ctx.tmp / "ds"), "--format", fmt, "--quiet", *overrides]


def _data_train(ctx: Context, dataset: Path) -> list[str]:
    """One training step of NAML on a prepared dataset (the run goes to tmp/run)."""
    return ["train", f"data={dataset}", "model=naml", "exp=quick", *SMALL, "exp.max_steps=1",
            f"exp.out_dir={ctx.tmp / 'run'}", "--quiet"]  # fmt: skip


def _data_tiny(ctx: Context, edit: Callable[[Path], None]) -> Path:
    """A copy of demo-tiny's prepared dataset, edited as a user might after `prepare`."""
    ds = ctx.copy(ctx.tiny, "edited")
    edit(ds)
    return ds


def _data_save(path: Path, change: Callable) -> None:
    """Rewrite an array of a dataset with `change` applied."""
    import numpy as np

    np.save(path, change(np.load(path)))


@case("data: generic data.columns naming a column the items file lacks")
def data_generic_missing_column(ctx: Context) -> None:
    from test_goodreads_generic import COLUMNS, LOOSE, _write_generic

    raw = _write_generic(ctx.tmp / "raw", "csv")
    line = ctx.error(
        _data_prepare(ctx, raw, "generic", *LOOSE, COLUMNS[0].replace("title: name", "title: nope")),
        "items.csv (field nope): no column `nope` for title (data.columns.title)",
        absent=("ds",),
    )
    assert "the file's columns: movie_id, name, plot, genre" in line


@case("data: generic repeated interactions are dropped and counted")
def data_generic_repeated_interactions(ctx: Context) -> None:
    from test_goodreads_generic import COLUMNS, LOOSE, _groups, _interactions_rows, _write_generic

    from oncerec.data.dataset import Dataset

    rows = _interactions_rows()
    once = _write_generic(ctx.tmp / "once", "csv", rows)
    twice = _write_generic(ctx.tmp / "twice", "csv", [r for r in rows for _ in (0, 1)])  # every row twice
    assert main(["prepare", str(once), "--out", str(ctx.tmp / "a"), "--format", "generic", "--quiet",
                 *LOOSE, *COLUMNS]) == 0  # fmt: skip
    ctx.capsys.readouterr()
    assert main(_data_prepare(ctx, twice, "generic", *LOOSE, *COLUMNS)) == 0
    out = ctx.capsys.readouterr().out
    assert f"warning: {len(rows)} interactions in interactions.csv repeat an earlier one" in out
    a, b = Dataset(ctx.tmp / "a"), Dataset(ctx.tmp / "ds")
    assert b.stats["repeated_interactions"] == len(rows) and a.stats["repeated_interactions"] == 0
    for split in ("train", "valid", "test"):  # the same positive never lands in two splits
        assert _groups(a, split) == _groups(b, split)


@case("data: EB-NeRD training split without clicks")
def data_ebnerd_without_clicks(ctx: Context) -> None:
    from test_readers import EB_TRAIN, _behaviors, write_ebnerd

    unclicked = [(*r[:4], []) for r in EB_TRAIN]
    raw = write_ebnerd(ctx.tmp / "eb", **{"train/behaviors": _behaviors(unclicked)})
    ctx.error(
        _data_prepare(ctx, raw, "ebnerd"),
        "train/behaviors.parquet (field article_ids_clicked): no clicks: not one candidate of the 3 impressions",
        absent=("ds",),
    )
    raw = write_ebnerd(ctx.tmp / "eb2", **{"train/behaviors": _behaviors(EB_TRAIN, clicked=False)})
    ctx.error(_data_prepare(ctx, raw, "ebnerd"), "(field article_ids_clicked): no labels: the train split")


@case("data: PENS training file with only a header")
def data_pens_header_only(ctx: Context) -> None:
    from test_readers import PENS_HEADER, PENS_NEWS, write_pens

    raw = write_pens(ctx.tmp / "pens", train=[PENS_HEADER])
    ctx.error(
        _data_prepare(ctx, raw, "pens"), "train.tsv: no impressions: the train split is empty", absent=("ds",)
    )
    raw = write_pens(ctx.tmp / "pens2", news=PENS_NEWS[:1])
    ctx.error(_data_prepare(ctx, raw, "pens"), "news.tsv: no news", absent=("ds",))


@case("data: EB-NeRD with no article")
def data_ebnerd_no_article(ctx: Context) -> None:
    from test_readers import _articles, write_ebnerd

    raw = write_ebnerd(ctx.tmp / "eb", articles=_articles().slice(0, 0))
    ctx.error(_data_prepare(ctx, raw, "ebnerd"), "articles.parquet: no articles", absent=("ds",))


@case("data: PENS candidate twice in one impression")
def data_pens_candidate_twice(ctx: Context) -> None:
    from test_readers import PENS_HEADER, _pens_line, write_pens

    raw = write_pens(ctx.tmp / "pens", train=[PENS_HEADER, _pens_line(pos="N1", neg="N1 N3")])
    ctx.error(
        _data_prepare(ctx, raw, "pens"),
        "train.tsv:2 (field pos/neg): candidate N1 appears twice in one impression",
        absent=("ds",),
    )


@case("data: EB-NeRD candidate twice in one impression")
def data_ebnerd_candidate_twice(ctx: Context) -> None:
    from test_readers import A1, A3, EB_TRAIN, _behaviors, write_ebnerd

    rows = [*EB_TRAIN[:2], (48403, 13538, 3600, [A3, A1, A3], [A1])]
    raw = write_ebnerd(ctx.tmp / "eb", **{"train/behaviors": _behaviors(rows)})
    ctx.error(
        _data_prepare(ctx, raw, "ebnerd"),
        f"train/behaviors.parquet:row 3 (field article_ids_inview): candidate {A3} appears twice in one impression",
        absent=("ds",),
    )


@case("data: MIND candidate twice in one impression (as PENS and EB-NeRD)")
def data_mind_candidate_twice(ctx: Context) -> None:
    from conftest import BEHAVIORS_DEV, write_mind

    raw = write_mind(
        ctx.tmp / "mind", dev_behaviors=[*BEHAVIORS_DEV[:3], "13\tU4\t11/15/2019 3:00:00 PM\tN2\tN4-0 N4-1"]
    )
    ctx.error(
        _data_prepare(ctx, raw, "mind"),
        "dev/behaviors.tsv:4 (field impressions): candidate N4 appears twice in one impression",
        absent=("ds",),
    )


@case("data: an empty xMIND translation keeps MIND's English text")
def data_xmind_empty_translation(ctx: Context) -> None:
    from conftest import write_mind
    from test_readers import write_xmind

    from oncerec.data.dataset import Dataset

    lang = write_xmind(
        ctx.tmp / "ron",
        xMINDsmall_train=["N1\t\tO aruncare târzie decide.", "N3\tCremă de zahăr ars\t", "N4\t\t"],
        xMINDsmall_dev=["N2\tAcțiunile cresc\t"],
    )
    argv = _data_prepare(ctx, write_mind(ctx.tmp / "mind"), "xmind", f"data.translations={lang}")
    ctx.capsys.readouterr()
    assert main(argv) == 0
    assert "empty translations in" in ctx.capsys.readouterr().out
    ds = Dataset(ctx.tmp / "ds")
    titles = {r["id"]: (r["title"], r["abstract"]) for r in ds.items_table.to_pylist()}
    assert titles["N1"] == ("Lakers win the \u201cbig\u201d game", "O aruncare târzie decide.")
    assert titles["N3"] == ("Cremă de zahăr ars", 'Easy "dessert" tips')
    assert titles["N4"] == ("United draw at home", "Fans unhappy.")
    assert ds.stats["xmind"]["english_kept"] == {"title": 2, "abstract": 2}
    shutil.rmtree(ctx.tmp / "ds")
    ctx.error([*argv, "--strict"], "train/news.tsv: news id N1: its title translation in", absent=("ds",))


@case("data: a Parquet list column is read as its elements, or refused where one value is needed")
def data_parquet_list_column(ctx: Context) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_goodreads_generic import COLUMNS, ITEMS, LOOSE, _write_generic

    from oncerec.data.dataset import Dataset

    raw = _write_generic(ctx.tmp / "raw", "parquet")
    listed = [r | {"name": ["Movie", r["movie_id"]]} for r in ITEMS]
    pq.write_table(pa.Table.from_pylist(listed), raw / "items.parquet")
    assert main(_data_prepare(ctx, raw, "generic", *LOOSE, *COLUMNS)) == 0
    titles = Dataset(ctx.tmp / "ds").items_table.column("title").to_pylist()
    assert titles[1:4] == ["Movie a", "Movie b", "Movie c"]
    shutil.rmtree(ctx.tmp / "ds")
    pq.write_table(
        pa.Table.from_pylist([r | {"genre": [r["genre"], "0"]} for r in ITEMS]), raw / "items.parquet"
    )
    ctx.error(
        _data_prepare(ctx, raw, "generic", *LOOSE, *COLUMNS),
        "items.parquet (field genre): a list column (list<element: string>): oncerec reads one value per row",
        absent=("ds",),
    )


@case("data: a short train/item.npy does not train")
def data_short_item_array(ctx: Context) -> None:
    from oncerec.data.dataset import Dataset

    ds = _data_tiny(ctx, lambda d: _data_save(d / "train" / "item.npy", lambda a: a[: len(a) // 2]))
    rows = Dataset(ctx.tiny).stats["splits"]["train"]["rows"]
    ctx.error(
        _data_train(ctx, ds),
        f"train/item.npy: {rows // 2} rows, the dataset's stats.json says {rows}; the file was changed or "
        "damaged after `oncerec prepare`: prepare the dataset again",
        absent=("run",),
    )


@case("data: a short vocab/word.json does not train")
def data_short_word_vocab(ctx: Context) -> None:
    import json

    from oncerec.data.dataset import Dataset

    def cut(d: Path) -> None:
        words = json.loads((d / "vocab" / "word.json").read_text())
        (d / "vocab" / "word.json").write_text(json.dumps(words[:10]))

    size = Dataset(ctx.tiny).stats["vocab"]["word"]
    ctx.error(
        _data_train(ctx, _data_tiny(ctx, cut)),
        f"vocab/word.json: 10 entries, the dataset's stats.json says {size}; the file was changed",
        absent=("run",),
    )


@case("data: Adressa time beyond 64 bits")
def data_adressa_huge_time(ctx: Context) -> None:
    from test_readers import ADRESSA_DAY1, LOOSE, _event, write_adressa

    raw = write_adressa(ctx.tmp / "adressa", day1=[*ADRESSA_DAY1[:3], _event("u2", "b", 4, time=10**30)])
    ctx.error(
        _data_prepare(ctx, raw, "adressa", *LOOSE),
        "20170101:4 (field time): time 10000000000000000000... (31 digits) is out of range",
        absent=("ds",),
    )


@case("data: generic time of 20 digits")
def data_generic_huge_time(ctx: Context) -> None:
    from test_goodreads_generic import COLUMNS, _interactions_rows, _write_generic

    rows = _interactions_rows()
    rows[2]["ts"] = "12345678901234567890"
    ctx.error(
        _data_prepare(ctx, _write_generic(ctx.tmp / "raw", "csv", rows), "generic", *COLUMNS),
        "interactions.csv:4 (field ts): time 12345678901234567890 is out of range",
        absent=("ds",),
    )


@case("data: a dataset edited after prepare: an item id beyond the items")
def data_item_id_out_of_range(ctx: Context) -> None:
    import numpy as np

    from oncerec.data.dataset import Dataset

    n = Dataset(ctx.tiny).num_items
    ds = _data_tiny(
        ctx, lambda d: _data_save(d / "valid" / "item.npy", lambda a: np.where(a == a[0], n + 5, a))
    )
    ctx.error(_data_train(ctx, ds), f"valid/item.npy: holds {n + 5}, outside 0..{n - 1}", absent=("run",))
    ds = ctx.copy(ctx.tiny, "edited2")
    _data_save(ds / "histories" / "items.npy", lambda a: np.where(a == a.max(), -3, a))
    ctx.error(_data_train(ctx, ds), f"histories/items.npy: holds -3, outside 0..{n - 1}")


@case("data: a dataset edited after prepare: a token id beyond the vocabulary")
def data_token_id_out_of_range(ctx: Context) -> None:
    from oncerec.data.dataset import Dataset

    words = Dataset(ctx.tiny).stats["vocab"]["word"]

    def beyond(ids):
        ids[3, 0] = words + 7  # an id the vocabulary does not have
        return ids

    ds = _data_tiny(ctx, lambda d: _data_save(d / "items" / "word" / "title.npy", beyond))
    ctx.error(
        _data_train(ctx, ds),
        f"items/word/title.npy: holds {words + 7}, outside 0..{words - 1}",
        absent=("run",),
    )


@case("data: a dataset edited after prepare: garbage items.parquet")
def data_garbage_items_table(ctx: Context) -> None:
    ds = _data_tiny(ctx, lambda d: (d / "items.parquet").write_bytes(b"PAR1 not a table"))
    ctx.error(
        ["recommend", str(ctx.run), "--data", str(ds), "--history", "N1"],
        "items.parquet: not a readable Parquet table",
    )


@case("data: a dataset edited after prepare: offsets out of order")
def data_bad_offsets(ctx: Context) -> None:
    ds = _data_tiny(ctx, lambda d: _data_save(d / "train" / "offsets.npy", lambda a: a[::-1].copy()))
    ctx.error(_data_train(ctx, ds), "train/offsets.npy: not offsets increasing from 0 to the")


# ------------------------------------------------------------------------ experiments, evaluation, resume


def _spec(ctx: Context, text: str) -> list[str]:
    """`experiment` argv of a spec file holding `text`, into tmp/out/deep."""
    return ["experiment", str(ctx.file("spec.yaml", text)), "--out", str(ctx.tmp / "out" / "deep")]


def _resume(out: Path, *overrides: str, model: str = "naml") -> list[str]:
    """`train` argv resuming the run in `out` (made as `trained` makes its run) up to step 4."""
    args = ["data=demo-tiny", f"model={model}", "exp=quick", *SMALL, "exp.max_steps=4", f"exp.out_dir={out}"]
    return ["train", *args, "exp.resume=true", *overrides, "--quiet"]


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
    from oncerec.training import full_ranking

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


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.integration] if n in INTEGRATION else []) for n in CASES]
)
def test_fault(name: str, trained, tmp_path, monkeypatch, capsys):
    run, tiny = trained
    CASES[name](Context(tmp_path, run, tiny, monkeypatch, capsys))
