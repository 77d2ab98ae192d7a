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


def _export(ctx: Context, *options: str) -> Path:
    """The export of `ctx.run` (made once per module, beside the run; copy it with `ctx.copy` to change it)."""
    out = ctx.run.parent / ("export" + "".join(options).replace("-", "_"))
    if not out.is_dir():
        assert main(["export", str(ctx.run), "--out", str(out), "--quiet", *options]) == 0
    return out


def _item_ids(ctx: Context) -> list[str]:
    import json

    return json.loads((_export(ctx) / "data" / "ids.json").read_text())


@case("serve: exclude_history leaves out every item given, not only the last history_len")
def serve_excludes_every_item_given(ctx: Context) -> None:
    from oncerec.serve.service import Service
    from oncerec.train.session import load_run

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


@case("serve: /recommend with an approximate index gives k items, or says how many and why")
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
        ["data=demo-tiny", "model=dnn", "exp=quick", "exp.max_steps=1", f"exp.out_dir={dnn}"], shared=SMALL
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


@case("serve: the workers of a killed serve die with it, and a port already served is refused")
def serve_workers_die_with_serve(ctx: Context) -> None:
    import contextlib

    import psutil

    from oncerec.bench.serve import ServerProcess
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
    assert "\noncerec_index_items 299\n" in http.get("/metrics").text


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


@case("serve: --port out of range is refused in one line, and --port 0 prints the port it bound")
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


@case("serve: an added-items folder it cannot use is refused at start, and one found damaged later is a 503")
def serve_added_items_folder(ctx: Context) -> None:
    import numpy as np

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
    damaged = export / "added" / "00000001"
    damaged.mkdir(parents=True)
    (damaged / "items.json").write_text('{"id": "N-x"}')  # an object, not a list of items
    np.save(damaged / "vectors.npy", np.zeros((1, 32), np.float32))
    needle = f"{damaged}: damaged added items (items.json is not a list of items"
    ctx.error(serve, needle)
    ctx.error([*serve, "--workers", "2"], needle)  # said by serve, not in a worker's traceback
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
    damaged.mkdir(parents=True)
    (damaged / "items.json").write_text("[{")
    (export / "added" / "LAST").write_text(damaged.name)
    for response in (http.post("/recommend", json={"history": [_item_ids(ctx)[1]]}), http.get("/health")):
        assert response.status_code == 503 and response.json()["field"] == "service"
        assert response.json()["error"].startswith(f"{damaged}: damaged added items")


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


# ------------------------------------------------------------------------------------ readers and datasets


# ------------------------------------------------------------------------ experiments, evaluation, resume


# ----------------------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name: str, trained, tmp_path, monkeypatch, capsys):
    run, tiny = trained
    CASES[name](Context(tmp_path, run, tiny, monkeypatch, capsys))
