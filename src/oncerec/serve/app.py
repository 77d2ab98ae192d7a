"""`oncerec serve`: the service over HTTP, a FastAPI app under uvicorn.

```
POST /recommend  {"history": [item ids], "user": null, "k": 10, "exclude_history": true}
                 -> {"items": [{"id": "N123", "score": 1.23}, ...], "source": "model" | "popularity"}
                    and, when there are fewer than k items, "note": how many and why
POST /items      {"items": [{"id": "N999", "title": "...", "category": "...", ...}]}
                 -> {"added": 1, "replaced": 0, "items": 6001}
GET  /health     -> {"status": "ok", "model": ..., "ranking": ..., "index": ..., "items": ..., ...}
GET  /metrics    Prometheus text (OpenMetrics when asked): requests by endpoint and status, a latency
                 histogram, the index size
```
A bad request gets a 4xx and `{"error": what is wrong, "field": where}`; bodies over `max_body` bytes a 413.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from errno import EADDRINUSE
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from oncerec.errors import OncerecError
from oncerec.serve.options import DEFAULT_CANDIDATES
from oncerec.serve.service import Answer, Query, RequestError, Service

MAX_BODY = 4 * 2**20
MAX_K = 1000
ENDPOINTS = ("/recommend", "/items", "/health", "/metrics")
# prctl(2): the signal a process gets when its parent dies
PR_SET_PDEATHSIG = 1
ORPHAN_GRACE_S = 10  # a worker whose parent died stops in order within this, or is ended
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    history: list[str] = []
    user: str | None = None
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_history: bool = True


class ItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    items: list[dict[str, Any]] = Field(min_length=1)


def create_app(service: Service, max_body: int = MAX_BODY, parallel: int = 1):
    """The ASGI app: the API, inside the request metrics and the body-size limit."""
    api = FastAPI(title="oncerec", docs_url=None, redoc_url=None, openapi_url=None)
    # no `_created` series beside each counter (prometheus_client's switch is for the whole process)
    disable_created_metrics()
    batcher = _Batcher(service, parallel)
    metrics = _Metrics(_BodyLimit(api, max_body), service, batcher)

    # The body is read as JSON whatever its Content-Type says (curl -d sends a form type), then validated.
    @api.post("/recommend")
    async def recommend(request: Request) -> JSONResponse:
        r = RecommendRequest.model_validate_json(await request.body())
        answer = await batcher.answer(Query(r.history, r.user, r.k, r.exclude_history))
        metrics.count_answer(answer.source)
        items = [{"id": i, "score": s} for i, s in answer.items]
        note = {"note": answer.note} if answer.note else {}
        return JSONResponse({"items": items, "source": answer.source, **note})

    @api.post("/items")
    async def items(request: Request) -> JSONResponse:
        r = ItemsRequest.model_validate_json(await request.body())
        return JSONResponse(await run_in_threadpool(service.add_items, r.items))

    @api.get("/health")
    def health() -> JSONResponse:
        return JSONResponse(service.health())

    @api.get("/metrics")
    def prometheus(request: Request) -> Response:
        body, content_type = metrics.exposition(request.headers.get("accept", ""))
        return Response(body, headers={"content-type": content_type})

    @api.exception_handler(RequestError)
    async def bad_request(_: Request, e: RequestError) -> JSONResponse:
        return JSONResponse({"error": e.message, "field": e.field, **e.detail}, status_code=e.status)

    @api.exception_handler(OncerecError)
    async def unavailable(_: Request, e: OncerecError) -> JSONResponse:
        """What the service cannot do now whatever the request (an added-items store another process wrote
        damaged): 503 with the reason, and /health answers it too."""
        return JSONResponse({"error": str(e), "field": "service"}, status_code=503)

    @api.exception_handler(ValidationError)
    async def invalid(_: Request, e: ValidationError) -> JSONResponse:
        first = e.errors()[0]
        return JSONResponse({"error": first["msg"], "field": _field(first["loc"])}, status_code=422)

    @api.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        field = "method" if e.status_code == 405 else "path"
        return JSONResponse({"error": str(e.detail), "field": field}, status_code=e.status_code)

    return metrics


def _field(loc: tuple) -> str:
    """("history", 3) -> "history[3]"; the body itself (not JSON, not an object) -> "body"."""
    name = ""
    for p in loc:
        name += f"[{p}]" if isinstance(p, int) else (f".{p}" if name else str(p))
    return name or "body"


async def _reply(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class _Batcher:
    """Requests that arrive while the model answers a batch wait for it, and the next call answers all of
    them at once (`Service.recommend_many`). A request alone is answered at once, with no waiting for company;
    under load the fixed cost of a model call and an index search is shared (see `python -m benchmarks --only
    serve`). Up to `parallel` batches run at a time, in threads (the model and FAISS release the GIL): one
    per core this process has to itself."""

    def __init__(self, service: Service, parallel: int = 1, limit: int = 64):
        self.service, self.parallel, self.limit = service, parallel, limit
        # threads of its own: anyio's pool (Starlette's run_in_threadpool) costs more per call
        self.threads = ThreadPoolExecutor(parallel, thread_name_prefix="oncerec-batch")
        self.waiting: list[tuple[Query, asyncio.Future]] = []
        self.tasks: set[asyncio.Task] = set()  # referenced: the loop keeps only a weak reference to tasks
        # batch loops running, counted by the loops themselves: a loop that has found the queue empty stops
        # counting at once. Counting `tasks` instead left a request waiting forever when it arrived after the
        # loop's last answer woke its caller but before the finished task's done-callback dropped it.
        self.running = 0
        self.batches = self.requests = 0

    async def answer(self, query: Query) -> Answer:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((query, future))
        if self.running < self.parallel:
            self.running += 1
            task = asyncio.create_task(self._run())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        answer = await future
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def _run(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[: self.limit], self.waiting[self.limit :]
                self.batches, self.requests = self.batches + 1, self.requests + len(batch)
                try:
                    queries = [q for q, _ in batch]
                    answers = await asyncio.get_running_loop().run_in_executor(
                        self.threads, self.service.recommend_many, queries
                    )
                except Exception as e:  # noqa: BLE001 - whatever failed, every request of the batch hears it
                    answers = [e] * len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():  # its client may have gone
                        future.set_result(answer)
        finally:
            self.running -= 1


class _BodyLimit:
    """Refuses a body over `limit` bytes with 413 before the app parses any of it (by its Content-Length, or
    while it streams in)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = {"error": f"request body over {self.limit:,} bytes", "field": "body"}
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _reply(send, 400, {"error": "Content-Length is not a number", "field": "body"})
            if int(declared) > self.limit:
                return await _reply(send, 413, too_big)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await _reply(send, 413, too_big)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class _Metrics:
    """Request counts by endpoint and status and a latency histogram by endpoint (prometheus_client, in a
    registry of this app's own), kept in this process: each worker of `serve --workers N` has its own. The
    batch counts and the index size are read when scraped, from the batcher and the service."""

    def __init__(self, app, service: Service, batcher: _Batcher):
        self.app = app
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "oncerec_requests",
            "HTTP requests answered, by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "oncerec_request_duration_seconds",
            "Time from receiving a request to the end of its answer.",
            ["endpoint"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "oncerec_recommendations",
            "Recommendations answered, by who ranked them.",
            ["source"],
            registry=self.registry,
        )
        for source in ("model", "popularity"):  # both shown from the start, at 0
            self.answers.labels(source)
        self.registry.register(_Live(service, batcher))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sent(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            path = scope["path"] if scope["path"] in ENDPOINTS else "other"
            self.requests.labels(path, str(status)).inc()
            self.latency.labels(path).observe(time.perf_counter() - start)

    def count_answer(self, source: str) -> None:
        self.answers.labels(source).inc()

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The metrics in the format the scraper asks for (Prometheus text unless it asks for OpenMetrics) and
        its content type."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class _Live:
    """The metrics read when scraped rather than counted as requests pass."""

    def __init__(self, service: Service, batcher: _Batcher):
        self.service, self.batcher = service, batcher

    def collect(self):
        yield CounterMetricFamily(
            "oncerec_batch_batches",
            "Model calls answering /recommend requests (one per batch).",
            value=self.batcher.batches,
        )
        yield CounterMetricFamily(
            "oncerec_batch_requests",
            "Requests those calls answered (÷ batches: the mean batch size).",
            value=self.batcher.requests,
        )
        yield GaugeMetricFamily(
            "oncerec_index_items", "Items the index serves.", value=self.service.item_count()
        )


# ------------------------------------------------------------------------------------------------ running


def _service(options: dict) -> Service:
    import faiss
    import torch

    # one thread per batch: batches run side by side on the cores, and threads within one would only contend
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    adding = (
        "with several workers, added items reach every worker through the added-items store: add --persist"
        if options["workers"] > 1 and not options["persist"]
        else ""
    )
    service = Service(
        Path(options["export"]),
        persist=options["persist"],
        candidates=options["candidates"],
        added_dir=Path(options["added_dir"]) if options["added_dir"] else None,
        adding=adding,
    )
    # The export's tables are millions of long-lived objects: out of the collector's way, so that its full
    # passes do not walk them in the middle of requests.
    gc.collect()
    gc.freeze()
    return service


def _claim(host: str, port: int) -> socket.socket:
    """This serve's claim on the address, held while it serves: an abstract Unix socket named after it, which
    the kernel releases when the process ends (a kill -9 included). Two serves started at once would both find
    the port free while their workers load the export, then share it (SO_REUSEPORT); the second is refused
    here instead."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0oncerec-serve {host} {port}")
    except OSError:
        claim.close()
        raise OncerecError(
            f"another `oncerec serve` is starting or serving on {host}:{port}: stop it or give another --port"
        ) from None
    return claim


def _listen(host: str, port: int, shared: bool) -> socket.socket:
    """The listening socket. `shared`: SO_REUSEPORT, so that each worker listens on a socket of its own and
    the kernel spreads new connections over them. Workers sharing one socket (uvicorn's `--workers`) leave
    it to whichever accepts first, and an idle worker takes every connection that arrives at once: measured,
    one of two workers answered 97% of the requests. TCP_NODELAY, which accepted connections inherit: an
    answer written in two parts must not wait for the client's delayed ACK (40 ms on Linux)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OncerecError(
            f"cannot listen on {host}:{port}: {e.strerror}"
            + (
                " (another server listens there): stop it or give another --port"
                if e.errno == EADDRINUSE
                else ""
            )
        ) from None
    return sock


def _die_with(parent: int) -> None:
    """Ends this worker when `serve` (its parent, process `parent`) is gone, however it went: a worker left
    behind by a kill -9 would go on serving the old model beside the next serve. Linux sends SIGTERM at the
    parent's death (PR_SET_PDEATHSIG); a thread watching the parent's pid covers other systems, and a parent
    that died before the signal was asked for."""
    with contextlib.suppress(OSError, AttributeError):  # no prctl (not Linux): the watch alone
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="oncerec-parent").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is adopted by another process
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's orderly stop: requests in flight are answered
    time.sleep(ORPHAN_GRACE_S)
    os._exit(1)


def _worker(options: dict, run: dict, errors) -> None:
    """One process of `serve --workers N`: loads the export, then listens (so that the kernel sends it
    connections only once it can answer them). Why it could not start goes to `serve` (`errors`), which says
    it in one line."""
    import uvicorn

    _die_with(options["parent"])
    try:
        app = create_app(_service(options), options["max_body"], options["parallel"])
        sock = _listen(run["host"], run["port"], shared=True)
    except OncerecError as e:
        errors.put(str(e))
        sys.exit(2)
    uvicorn.Server(uvicorn.Config(app, **run)).run(sockets=[sock])


def serve(
    export: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    persist: bool = False,
    candidates: int = DEFAULT_CANDIDATES,
    max_body: int = MAX_BODY,
    added_dir: Path | None = None,
) -> None:
    """Serve an export until interrupted. Several workers are processes of their own, each with its copy of
    the export; when one of them dies the others are stopped and serve exits with its status (a supervisor
    such as systemd or Kubernetes restarts the whole service)."""
    import uvicorn

    options = {
        "export": str(export),
        "workers": workers,
        "persist": persist,
        "candidates": candidates,
        "max_body": max_body,
        "added_dir": str(added_dir) if added_dir else "",
        # batches computed at a time in each process: the cores shared out (more would only contend)
        "parallel": max(1, len(os.sched_getaffinity(0)) // workers),
        "parent": os.getpid(),
    }
    # A port in use is refused here, before the export loads: probed without SO_REUSEPORT, which would let
    # this serve's workers listen beside those of a serve already there and share its traffic. Port 0: the
    # free port the system gave, which the workers then share.
    with _listen(host, port, shared=False) as sock, _claim(host, sock.getsockname()[1]):
        run = {"host": host, "port": sock.getsockname()[1], "log_level": "warning", "access_log": False}
        print(
            f"serving {export} on http://{host}:{run['port']} ({workers} worker{'s' if workers > 1 else ''})",
            file=sys.stderr,
            flush=True,
        )
        if workers == 1:
            app = create_app(_service(options), max_body, options["parallel"])
            uvicorn.Server(uvicorn.Config(app, **run)).run(sockets=[sock])
            return
        sock.close()  # each worker listens on a socket of its own
        _run_workers(options, run)


def _run_workers(options: dict, run: dict) -> None:
    spawn = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    errors = spawn.SimpleQueue()
    processes = [
        spawn.Process(target=_worker, args=(options, run, errors), daemon=True)
        for _ in range(options["workers"])
    ]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    for p in processes:
        p.start()
    while not stop.is_set() and all(p.is_alive() for p in processes):
        stop.wait(0.5)
    dead = next((p for p in processes if not p.is_alive()), None)
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(30)
    if dead is not None and not stop.is_set():
        if not errors.empty():  # a worker that could not start: the export, the added items
            raise OncerecError(errors.get())
        raise OncerecError(f"a serve worker exited with status {dead.exitcode}; the others were stopped")
