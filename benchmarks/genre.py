"""GENRE measured: request throughput of the run loop against a local chat-completions server with a fixed
200 ms latency, at several concurrencies, and the local backend's generation speed.

Throughput goes through the whole path a real run takes (workers, limiter, the `openai` client, strict
parsing, one committed SQLite row per answer). The ideal at concurrency c is c / latency; a server has a
capacity of its own, so the ratio is taken against min(ideal, capacity), the capacity being the requests/s
the same client and server reach at the highest concurrency with no latency at all. The server runs in a
process of its own, so that it does not share the client's interpreter lock.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from oncerec.genre.backends import GenParams, OpenAIBackend
from oncerec.genre.options import RunOptions, TaskOptions
from oncerec.genre.runner import Summary, execute
from oncerec.genre.store import Store
from oncerec.genre.tasks import Request, Summarize

logger = logging.getLogger(__name__)

LATENCY = 0.2
LEVELS = (1, 8, 32, 128)
TARGET = 0.9  # share of the ideal throughput to reach
LOCAL_MODEL = "smollm2-135m"

ROOT = Path(__file__).resolve().parents[1]


def bench_genre(quick: bool = True, local: bool = True, model_path: str | None = None) -> dict:
    """Throughput at each concurrency (and the capacity), then the local backend (`local=False`: skipped).
    `model_path`: the local model's folder resolved beforehand (as `bench.dire.resolve_models` does), so
    that a private benchmark cache does not convert the packaged model again."""
    rounds = 10 if quick else 25  # each worker sends this many requests (c = 1: twice as many)
    result: dict = {"latency_s": LATENCY, "levels": {}}
    with _server(LATENCY) as url:
        for c in LEVELS:
            n = max(2 * rounds, c * rounds)
            rate, cpu_ms = _throughput(url, c, n)
            result["levels"][c] = {
                "requests": n,
                "requests_per_s": rate,
                "ideal_per_s": c / LATENCY,
                "client_cpu_ms_per_request": cpu_ms,
                "client_cpu_share": cpu_ms * rate / 1000,  # of one core
            }
            logger.info(
                f"  genre: concurrency {c}: {rate:.1f} requests/s (ideal {c / LATENCY:.0f}), client CPU {cpu_ms:.1f} ms each"
            )
    with _server(0.0) as url:
        c = LEVELS[-1]
        result["capacity_per_s"], result["capacity_cpu_ms_per_request"] = _throughput(url, c, c * rounds * 2)
        logger.info(
            f"  genre: capacity (no latency, concurrency {c}): {result['capacity_per_s']:.0f} requests/s"
        )
    for level in result["levels"].values():
        bound = min(level["ideal_per_s"], result["capacity_per_s"])
        level["ratio"] = level["requests_per_s"] / bound
        level["capped"] = bound < level["ideal_per_s"]
        level["met"] = level["ratio"] >= TARGET
    if local:
        result["local"] = bench_local(8 if quick else 32, model=model_path or LOCAL_MODEL)
    return result


class _server:
    """`python -m tests.fake_openai` in a child process, for the `with` block."""

    def __init__(self, latency: float):
        self.latency = latency

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_openai", "--latency", str(self.latency)],
            cwd=ROOT,  # the test double lives in the repository's tests/, not in the package
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        return line.split(" ", 1)[1]

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def _requests(task: Summarize, n: int, tag: str) -> list[tuple[Request, str]]:
    out = []
    for i in range(n):
        values = {
            "title": f"Item {i} of {tag}",
            "abstract": "An abstract.",
            "category": "news",
            "subcategory": "x",
        }
        out.append(
            (Request("summarize", f"{tag}-{i}", task.template.messages(values), task.template), f"{tag}-{i}")
        )
    return out


def _throughput(url: str, concurrency: int, n: int) -> tuple[float, float]:
    """(requests/s, this process's CPU ms per request) of `n` fresh requests through the run loop with
    `concurrency` workers, in the steady state: the first and the last `concurrency` answers (the ramp-up,
    when every worker sends at the same instant and the answers queue behind one another in the client, and
    the drain) are left out, as they are a negligible part of a real run of thousands of requests. CPU near
    1000 ms/s means the client, not the server, sets the pace."""
    if n <= 2 * concurrency:
        raise ValueError(f"{n} requests leave no steady state at concurrency {concurrency}")
    task = Summarize(None, TaskOptions(), "news")
    opts = RunOptions(base_url=url, model="bench", concurrency=concurrency, timeout=30)
    params = GenParams(max_tokens=task.max_tokens)
    answered: list[float] = []  # when each timed answer arrived

    class Timed(OpenAIBackend):
        async def complete(self, *args, **kwargs):
            out = await super().complete(*args, **kwargs)
            answered.append(time.perf_counter())
            return out

    with tempfile.TemporaryDirectory(prefix="oncerec-bench-genre-") as tmp:
        store = Store(Path(tmp) / "store.sqlite")
        summary = Summary("summarize", "openai:bench", task.template.version)

        async def go() -> float:
            backend = Timed("bench", url, None, opts.timeout, concurrency)
            try:
                # untimed: one request per worker opens the connections (and the server's threads)
                await execute(
                    _requests(task, concurrency, "warm"), task, backend, store, opts, params, summary
                )
                answered.clear()
                cpu = time.process_time()
                await execute(
                    _requests(task, n, f"c{concurrency}"), task, backend, store, opts, params, summary
                )
                return time.process_time() - cpu
            finally:
                await backend.aclose()

        cpu = asyncio.run(go())
        store.close()
    if summary.done != n + concurrency:
        raise RuntimeError(f"benchmark: {summary.failed} of {n + concurrency} requests failed")
    c = concurrency
    return (n - 2 * c) / (answered[n - 1 - c] - answered[c - 1]), 1000 * cpu / n


def bench_local(prompts: int, batch_size: int = 8, model: str = LOCAL_MODEL) -> dict:
    """Generated tokens/s of the local backend, batched and one request at a time, on the same prompts."""
    from oncerec.genre.backends import LocalBackend

    task = Summarize(None, TaskOptions(), "news")
    titles = [
        "Shocking: What drivers need to know about new speed cameras",
        "Exclusive: The surprising truth about school lunches",
        "Analysis: Why the Fed may pause rate hikes this winter",
        "News: A new look at hiking trails near Denver",
        "Stunning: How one bakery survived the storm",
        "Breaking: City council votes on the stadium deal",
        "Experts warn homeowners about rising insurance costs",
        "Why classrooms may matter more than ever for parents",
    ]
    messages = [
        task.template.messages(
            {
                "title": titles[i % len(titles)] + f" ({i})",
                "abstract": "",
                "category": "news",
                "subcategory": "x",
            }
        )
        for i in range(prompts)
    ]
    params = GenParams(max_tokens=task.max_tokens)
    backend = LocalBackend(model, batch_size=batch_size)

    async def run(batch: int, todo: list) -> tuple[int, int, float]:
        backend.batch_size = batch
        start = time.perf_counter()
        done = await asyncio.gather(*(backend.complete(m, params, task.template.prefix) for m in todo))
        return sum(c.tokens_out for c in done), sum(c.tokens_in for c in done), time.perf_counter() - start

    async def both() -> dict:
        try:
            await run(batch_size, messages[:2])  # untimed: first-call allocations
            tokens, prompt_tokens, seconds = await run(batch_size, messages)
            tokens1, _, seconds1 = await run(1, messages)
        finally:
            await backend.aclose()
        return {
            "model": Path(model).name,
            "prompts": prompts,
            "batch_size": batch_size,
            "tokens": tokens,
            "prompt_tokens": prompt_tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            # answers are short JSON objects: reading the prompt is most of the work
            "processed_tokens_per_s": (tokens + prompt_tokens) / seconds,
            "single_seconds": seconds1,
            "single_tokens_per_s": tokens1 / seconds1,
            "speedup": seconds1 / seconds,
        }

    result = asyncio.run(both())
    logger.info(
        f"  genre: local {result['model']}: {result['tokens_per_s']:.1f} tokens/s in batches of {batch_size}, "
        f"{result['single_tokens_per_s']:.1f} one at a time"
    )
    return result


def genre_rows(r: dict) -> list[str]:
    """Rows of the `python -m benchmarks` table (| benchmark | ratio | the ratio is | absolute | peak RSS |)."""
    rows = []
    for c, level in r["levels"].items():
        bound = "capacity" if level["capped"] else "ideal (concurrency ÷ latency)"
        rows.append(
            f"| GENRE requests, concurrency {c} ({r['latency_s'] * 1000:.0f} ms server latency) | "
            f"{level['ratio']:.2f}x | requests/s ÷ {bound} (target ≥{TARGET:.2f}: "
            f"{'met' if level['met'] else 'MISSED'}) | {level['requests_per_s']:.1f} requests/s, ideal "
            f"{level['ideal_per_s']:.0f}, capacity {r['capacity_per_s']:.0f}; {level['requests']} requests; client "
            f"CPU {level['client_cpu_ms_per_request']:.1f} ms/request ({level['client_cpu_share']:.0%} of a core) | |"
        )
    if "local" in r:
        x = r["local"]
        rows.append(
            f"| GENRE local backend ({x['model']}, {x['prompts']} summaries) | {x['speedup']:.1f}x | one-at-a-time ÷ "
            f"batched time (batches of {x['batch_size']}) | {x['tokens_per_s']:.1f} generated tokens/s batched "
            f"({x['processed_tokens_per_s']:.0f} tokens/s with the prompts), {x['single_tokens_per_s']:.1f} one at a "
            f"time | |"
        )
    return rows
