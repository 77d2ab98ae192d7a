"""The service measured: `POST /recommend` requests/s and latency percentiles at several concurrencies against
a running `oncerec serve` (a child process), for each index; the approximate index's recall@10 against the
exact one on the same requests; the time to add 1,000 items (`POST /items`, persisted).

The model is NRMS at its preset sizes, untrained (the speed of serving does not depend on the weights), on
the demo data (full size: `large`, MIND-large-shaped, 160k items). Every request is a history of 50 random
items and k=10. The client is a small asyncio HTTP/1.1 client over keep-alive connections, one per concurrent
stream: a general-purpose client would spend more of the 2 cores it shares with the server it measures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from oncerec.config.loader import build_config
from oncerec.errors import OncerecError
from oncerec.serve.export import export_run
from oncerec.training.build import build_recommender
from oncerec.training.session import Run

logger = logging.getLogger(__name__)

TARGET_P99_MS = 20.0  # at concurrency 8 with the approximate index
TARGET_LEVEL = 8


@dataclass(frozen=True)
class ServeSizes:
    scale: str  # demo data
    requests: int  # timed requests per concurrency level
    levels: tuple[int, ...] = (1, 8, 32)
    servers: tuple[tuple[str, int], ...] = (("flat", 1), ("hnsw", 1), ("hnsw", 2))  # (index, workers)
    history: int = 50
    k: int = 10
    added: int = 1000  # items added by one POST /items


SERVE_FULL = ServeSizes("large", 2000)
SERVE_QUICK = ServeSizes("small", 400, servers=(("flat", 1), ("hnsw", 1)))


class ServerProcess:
    """`oncerec serve PATH OPTIONS...` in a child process on a free port of 127.0.0.1, ready (it answered
    /health) when the constructor returns."""

    def __init__(self, path: Path, *options: str, timeout: float = 600):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "oncerec.cli",
            "serve",
            str(path),
            "--port",
            str(self.port),
            *options,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # with several workers, ready when each has answered (each loads the export, then listens)
        workers = int(options[options.index("--workers") + 1]) if "--workers" in options else 1
        deadline = time.monotonic() + timeout
        while len(self._answering(workers)) < workers:
            if self.process.poll() is not None:
                raise OncerecError(
                    f"serve exited with {self.process.returncode}:\n{self.process.stdout.read()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise OncerecError(f"serve did not answer {self.url}/health in {timeout:.0f} s")
            time.sleep(0.2)

    def _answering(self, workers: int) -> set[int]:
        """The processes that answer /health, asked (on new connections) until `workers` of them have."""
        pids: set[int] = set()
        for _ in range(20 * workers):
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as r:
                    pids.add(json.load(r)["pid"])
            except OSError:
                break
            if len(pids) == workers:
                break
        return pids

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or an out-of-memory kill."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bench_serve(sizes: ServeSizes) -> dict:
    from benchmarks.suite import SEED, demo_dataset

    dataset = demo_dataset(sizes.scale)
    cfg = build_config([f"data=demo-{sizes.scale}", "model=nrms"])
    torch.manual_seed(SEED)
    model = build_recommender(cfg.model, cfg.embed, dataset, seed=SEED).eval()
    run = Run(cfg, dataset, model, torch.device("cpu"))
    table = dataset.items_table
    ids = table.column("id").to_pylist()
    rng = np.random.default_rng(SEED)
    warmup = [_body(ids, rng, sizes) for _ in range(20)]
    bodies = [_body(ids, rng, sizes) for _ in range(sizes.requests)]
    rows = rng.choice(np.arange(1, len(ids)), sizes.added, replace=len(ids) <= sizes.added)
    new_items = [
        {
            "id": f"added-{n}",
            **{f: table.column(f)[int(r)].as_py() for f in ("title", "abstract", "category")},
        }
        for n, r in enumerate(rows)
    ]
    result: dict = {
        "scale": sizes.scale,
        "items": len(ids) - 1,
        "model": "nrms",
        "dim": cfg.model.hidden_size,
    }
    result |= {"history": sizes.history, "k": sizes.k, "added": sizes.added, "servers": {}}
    answers: dict[str, list[list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="oncerec-bench-serve-") as tmp:
        for kind in dict.fromkeys(k for k, _ in sizes.servers):
            start = time.perf_counter()
            export_run(run, Path(tmp) / kind, index=kind)
            result[f"export_{kind}_s"] = time.perf_counter() - start
            logger.info(f"  serve: {kind} export in {result[f'export_{kind}_s']:.1f} s")
        for kind, workers in sizes.servers:
            name = f"{kind}, {workers} worker{'s' if workers > 1 else ''}"
            with ServerProcess(Path(tmp) / kind, "--workers", str(workers), "--persist") as server:
                _run(_load(server.port, warmup, 1))
                levels = {}
                for c in sizes.levels:
                    seconds, latencies, replies = _run(_load(server.port, bodies, c))
                    levels[c] = _summary(seconds, latencies)
                    if c == 1:
                        answers[name] = [[x["id"] for x in json.loads(r)["items"]] for r in replies]
                    logger.info(
                        f"  serve {name}: concurrency {c}: {levels[c]['requests_per_s']:.0f} requests/s, "
                        f"p50 {levels[c]['p50_ms']:.1f} ms, p99 {levels[c]['p99_ms']:.1f} ms"
                    )
                start = time.perf_counter()
                status, reply = _post(server.url + "/items", {"items": new_items})
                add_s = time.perf_counter() - start
                if status != 200:
                    raise OncerecError(f"bench serve: POST /items answered {status}: {reply[:500]}")
                logger.info(f"  serve {name}: {sizes.added} items added in {add_s:.2f} s")
            shutil.rmtree(Path(tmp) / kind / "added")  # the next server of this export starts without them
            result["servers"][name] = {"index": kind, "workers": workers, "levels": levels, "add_s": add_s}
    exact = next((answers[n] for n, s in result["servers"].items() if s["index"] == "flat"), None)
    for name, s in result["servers"].items():
        if exact is not None and s["index"] != "flat":
            s["recall_at_k"] = float(
                np.mean([len(set(a) & set(b)) / sizes.k for a, b in zip(answers[name], exact, strict=True)])
            )
        target = s["levels"].get(TARGET_LEVEL)
        if s["index"] != "flat" and target is not None:
            s["target_met"] = target["p99_ms"] < TARGET_P99_MS
    return result


def _body(ids: list[str], rng: np.random.Generator, sizes: ServeSizes) -> bytes:
    history = [ids[i] for i in rng.integers(1, len(ids), sizes.history)]
    return json.dumps({"history": history, "k": sizes.k}).encode()


def _post(url: str, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _summary(seconds: float, latencies: list[float]) -> dict:
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(ms),
        "seconds": seconds,
        "requests_per_s": len(ms) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def _run(load):
    """The client's event loop: uvloop's (the server's too), which spends less of the cores the client
    shares with the server it measures."""
    import uvloop

    return uvloop.run(load)


async def _load(port: int, bodies: list[bytes], concurrency: int) -> tuple[float, list[float], list[bytes]]:
    """Send every body once, `concurrency` at a time (each stream its own keep-alive connection): wall time,
    each request's latency, and the replies in the order of `bodies`."""
    latencies: list[float] = [0.0] * len(bodies)
    replies: list[bytes] = [b""] * len(bodies)

    async def stream(first: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(first, len(bodies), concurrency):
                head = f"POST /recommend HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(bodies[i])}\r\n\r\n"
                start = time.perf_counter()
                writer.write(head.encode() + bodies[i])
                status, reply = await _response(reader)
                latencies[i] = time.perf_counter() - start
                if status != 200:
                    raise OncerecError(f"bench serve: /recommend answered {status}: {reply[:500]!r}")
                replies[i] = reply
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(stream(s) for s in range(concurrency)))
    return time.perf_counter() - start, latencies, replies


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


def serve_rows(r: dict) -> list[str]:
    """Rows of the `python -m benchmarks` table (| benchmark | ratio | the ratio is | absolute | peak RSS |)."""
    if "skipped" in r:
        return [f"| serve | | skipped: {r['skipped']} | | |"]
    rows = []
    what = f"nrms, demo-{r['scale']}, {r['items']:,} items x {r['dim']}, history {r['history']}, k={r['k']}"
    for name, s in r["servers"].items():
        one = s["levels"][min(s["levels"])]
        for c, level in s["levels"].items():
            target = ""
            if "target_met" in s and c == TARGET_LEVEL:
                target = f" (target p99 < {TARGET_P99_MS:.0f} ms: {'met' if s['target_met'] else 'MISSED'})"
            rows.append(
                f"| serve {name}, concurrency {c} ({what}) | {level['requests_per_s'] / one['requests_per_s']:.2f}x "
                f"| requests/s ÷ concurrency {min(s['levels'])}'s{target} | {level['requests_per_s']:.0f} requests/s, "
                f"p50 {level['p50_ms']:.1f} ms, p90 {level['p90_ms']:.1f} ms, p99 {level['p99_ms']:.1f} ms; "
                f"{level['requests']} requests | |"
            )
        if "recall_at_k" in s:
            rows.append(
                f"| serve {name}: recall@{r['k']} | {s['recall_at_k']:.3f} | share of the exact index's top {r['k']} "
                f"found, same requests | | |"
            )
        rows.append(
            f"| serve {name}: add {r['added']:,} items | | | one POST /items (persisted) in {s['add_s']:.2f} s, "
            f"{r['added'] / s['add_s']:,.0f} items/s | |"
        )
    return rows
