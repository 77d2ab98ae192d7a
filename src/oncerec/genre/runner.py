"""`oncerec genre run`: plan a task's requests, skip those the store already holds, send the rest, store each
answer as it arrives, and end with a summary in which every request is counted.

One request's life: a worker takes it, waits for the rate limits, sends it (transport failures are retried
with backoff, see limits.py), parses the answer strictly; an unusable answer is sent back to the model with
the error, up to `parse_retries` times; the outcome (`done`, `invalid` with the raw text, or `error`) is
committed to the store before the worker takes the next request. So a killed run loses only the requests
in flight, and a re-run sends exactly the requests without a stored outcome.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from oncerec.data.dataset import Dataset
from oncerec.genre.backends import (
    DEFAULT_LOCAL_MODEL,
    Backend,
    GenParams,
    LocalBackend,
    OpenAIBackend,
    api_key_from,
    display_url,
    estimate_tokens,
)
from oncerec.genre.limits import (
    FatalError,
    Limiter,
    RejectedError,
    RetryPolicy,
    TransientError,
    with_retries,
)
from oncerec.genre.options import STORE_NAME, RunOptions
from oncerec.genre.parsing import InvalidAnswer
from oncerec.genre.store import Record, Store, request_key
from oncerec.genre.tasks import DatasetView, Generate, Plan, Profile, Request, Task, make_task

logger = logging.getLogger(__name__)

STAGGER_S = 0.002  # between the starts of two workers...
RAMP_S = 0.1  # ...all started within this time


@dataclass
class Summary:
    """Counts of one task run: requests = cached + done + invalid + errors (+ not sent, when stopped)."""

    task: str
    model: str
    prompt_version: str
    requests: int = 0
    cached: int = 0  # outcome already in the store (done, or invalid without --retry-invalid)
    done: int = 0
    invalid: int = 0  # answers still unusable after the parse retries (raw text kept)
    errors: int = 0  # requests that failed (transport errors after every retry, rejected requests)
    skipped: dict[str, int] = field(default_factory=dict)  # targets not asked, by reason
    transport_retries: int = 0
    parse_retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    dry_run: bool = False
    estimated_tokens_in: int = 0
    estimated_tokens_out: int = 0  # an upper bound: max_tokens per request
    store: str = ""

    @property
    def failed(self) -> int:
        return self.invalid + self.errors

    def add(self, record: Record) -> None:
        counter = {"done": "done", "invalid": "invalid", "error": "errors"}[record.status]
        setattr(self, counter, getattr(self, counter) + 1)
        self.tokens_in += record.tokens_in
        self.tokens_out += record.tokens_out

    def lines(self, price_in: float, price_out: float) -> list[str]:
        head = f"{self.task} ({self.model}, prompt {self.prompt_version}): {self.requests:,} requests"
        skipped = (
            "; not asked: " + ", ".join(f"{n:,} {why}" for why, n in self.skipped.items())
            if self.skipped
            else ""
        )
        prices = f"at ${price_in:g} / ${price_out:g} per 1M tokens in / out"
        if self.dry_run:
            pending = self.requests - self.cached
            return [
                f"{head}: {self.cached:,} already in the store, {pending:,} to send{skipped}",
                f"dry run: about {self.estimated_tokens_in:,} tokens in, at most {self.estimated_tokens_out:,} out; "
                f"estimated cost at most ${self.cost:.4f} {prices}; nothing was sent",
            ]
        failed = (
            f"{self.failed:,} failed ({self.invalid:,} invalid answers, {self.errors:,} request errors)"
            if self.failed
            else "0 failed"
        )
        rate = (self.done + self.failed) / self.seconds if self.seconds else 0.0
        out = [
            f"{head}: {self.done:,} done, {self.cached:,} cached, {failed}{skipped}",
            f"tokens in {self.tokens_in:,} / out {self.tokens_out:,}; estimated cost ${self.cost:.4f} {prices}; "
            f"{self.seconds:.1f} s, {rate:.1f} requests/s; retries: {self.transport_retries:,} transport, "
            f"{self.parse_retries:,} after invalid answers",
        ]
        if self.failed:
            out.append(
                f"failures are kept in {self.store} with their raw answers (`oncerec genre export`); merge "
                "falls back for them; re-running retries the request errors"
            )
        return out


def open_dataset(data: str, progress: bool = True) -> Dataset:
    """`--data`: what `data=` accepts (prepared directory, raw MIND folder prepared on first use, preset)."""
    from oncerec.config.loader import build_config
    from oncerec.data.dataset import resolve_dataset

    cfg = build_config([f"data={data}"]).data
    return Dataset(resolve_dataset(cfg, progress=progress))


def model_identity(opts: RunOptions) -> tuple[str, str]:
    kind = opts.kind
    if kind == "openai" and not opts.model:
        raise FatalError("--model is required with the openai backend (the model name at the endpoint)")
    return kind, opts.model or DEFAULT_LOCAL_MODEL


def make_backend(opts: RunOptions) -> Backend:
    kind, model = model_identity(opts)
    if kind == "openai":
        return OpenAIBackend(
            model, opts.base_url, api_key_from(opts.api_key_env), opts.timeout, opts.concurrency
        )
    return LocalBackend(model, batch_size=opts.batch_size, threads=opts.threads)


def run_task(
    task_name: str,
    data: str,
    opts: RunOptions,
    progress: bool = True,
    backend: Backend | None = None,
) -> list[Summary]:
    """Run one task (with `chain`, the profile stage first); one Summary per stage. `backend`: an already
    built backend to use (and leave open), e.g. a loaded local model shared between runs."""
    dataset = open_dataset(data, progress)
    view = DatasetView(dataset)
    task = make_task(task_name, view, opts.task_options())
    store_path = Path(opts.store) if opts.store else dataset.root / STORE_NAME
    if opts.dry_run:
        return _dry_run(task, view, opts, store_path)
    store = Store(store_path)
    try:
        return asyncio.run(_run_stages(task, view, opts, store, progress, backend))
    finally:
        store.close()


class _Backend:
    """The backend, built when a stage first has something to send: a re-run that finds every answer in the
    store loads no model and opens no connection."""

    def __init__(self, opts: RunOptions, given: Backend | None):
        self.opts, self.given, self.built = opts, given, None
        self.identity = given.identity if given else "{}:{}".format(*model_identity(opts))

    def get(self) -> Backend:
        if self.given is not None:
            return self.given
        if self.built is None:
            self.built = make_backend(self.opts)
        return self.built

    async def aclose(self) -> None:
        if self.built is not None:
            await self.built.aclose()


async def _run_stages(
    task: Task,
    view: DatasetView,
    opts: RunOptions,
    store: Store,
    progress: bool,
    given: Backend | None,
) -> list[Summary]:
    backend = _Backend(opts, given)
    try:
        summaries = []
        if isinstance(task, Generate) and task.opts.chain:
            users, _ = task.cold_users(opts.limit)
            profiler = Profile(view, task.opts, task.domain)
            plan = profiler.plan(users=users)
            summaries.append(await _stage(profiler, plan, backend, store, opts, progress))
            params = _params(profiler, opts)
            profiles = {}
            for r in plan.requests:
                record = store.get(_key(r, backend.identity, params))
                profiles[r.target] = record.output if record and record.status == "done" else None
            plan = task.plan(opts.limit, profiles)
        else:
            plan = task.plan(opts.limit)
        summaries.append(await _stage(task, plan, backend, store, opts, progress))
        return summaries
    finally:
        await backend.aclose()


def _params(task: Task, opts: RunOptions) -> GenParams:
    return GenParams(opts.temperature, opts.max_tokens or task.max_tokens, opts.json_mode)


def _key(r: Request, model: str, params: GenParams) -> str:
    return request_key(r.task, r.target, r.template.version, model, params.as_dict(), r.upstream)


def _pending(plan: Plan, store: Store | None, model: str, params: GenParams, retry_invalid: bool):
    keys = [_key(r, model, params) for r in plan.requests]
    statuses = store.statuses(keys) if store else {}
    finished = {"done"} if retry_invalid else {"done", "invalid"}
    pending = [(r, k) for r, k in zip(plan.requests, keys, strict=True) if statuses.get(k) not in finished]
    return pending, len(plan.requests) - len(pending)


def _warn_edited(task: Task, store: Store) -> None:
    digests = {
        row[0]
        for row in store.db.execute(
            "SELECT DISTINCT prompt_digest FROM responses WHERE task = ? AND prompt_version = ?",
            (task.name, task.template.version),
        )
    }
    if digests - {task.template.digest}:
        logger.warning(
            f"prompt {task.template.name} changed since answers to its version {task.template.version} "
            "were stored; they are reused: give the template a new version line to ask again"
        )


def _dry_run(task: Task, view: DatasetView, opts: RunOptions, store_path: Path) -> list[Summary]:
    kind, model = model_identity(opts)
    identity = f"{kind}:{model}"
    store = Store(store_path, readonly=True) if store_path.is_file() else None
    try:
        stages: list[tuple[Task, Plan]] = []
        if isinstance(task, Generate) and task.opts.chain:
            users, _ = task.cold_users(opts.limit)
            profiler = Profile(view, task.opts, task.domain)
            stages.append((profiler, profiler.plan(users=users)))
        stages.append((task, task.plan(opts.limit)))
        out = []
        for t, plan in stages:
            params = _params(t, opts)
            pending, cached = _pending(plan, store, identity, params, opts.retry_invalid)
            s = Summary(
                t.name, identity, t.template.version, len(plan.requests), cached, skipped=plan.skipped
            )
            s.dry_run, s.store = True, str(store_path)
            # Each parse retry resends the conversation: the estimate counts first tries only.
            s.estimated_tokens_in = sum(estimate_tokens(r.messages) for r, _ in pending)
            s.estimated_tokens_out = params.max_tokens * len(pending)
            s.cost = (s.estimated_tokens_in * opts.price_in + s.estimated_tokens_out * opts.price_out) / 1e6
            out.append(s)
        return out
    finally:
        if store:
            store.close()


async def _stage(
    task: Task, plan: Plan, backend: _Backend, store: Store, opts: RunOptions, progress: bool
) -> Summary:
    params = _params(task, opts)
    pending, cached = _pending(plan, store, backend.identity, params, opts.retry_invalid)
    summary = Summary(task.name, backend.identity, task.template.version, len(plan.requests), cached)
    summary.skipped, summary.store = plan.skipped, str(store.path)
    if cached:
        _warn_edited(task, store)
    started = time.perf_counter()
    if pending:
        await execute(pending, task, backend.get(), store, opts, params, summary, progress)
    summary.seconds = time.perf_counter() - started
    summary.cost = (summary.tokens_in * opts.price_in + summary.tokens_out * opts.price_out) / 1e6
    return summary


async def execute(
    pending: list[tuple[Request, str]],
    task: Task,
    backend: Backend,
    store: Store,
    opts: RunOptions,
    params: GenParams,
    summary: Summary,
    progress: bool = False,
) -> None:
    """Send the pending (request, key) pairs with `opts.concurrency` workers; each outcome is stored at once."""
    queue = deque(pending)
    ctx = RunContext.build(backend, params, opts, summary)
    bar = tqdm(total=len(queue), desc=task.name, unit="req", disable=not progress, leave=False)
    failures_in_a_row = 0

    async def worker(index: int) -> None:
        nonlocal failures_in_a_row
        # Workers start a little apart: started together against a server of steady latency, their answers
        # would keep arriving all at once and wait for each other's processing, round after round; and a
        # rate-limited API sees a ramp rather than a burst.
        await asyncio.sleep(index * min(STAGGER_S, RAMP_S / len(workers)))
        while queue:
            request, key = queue.popleft()
            record = await answer(request, key, task, ctx)
            store.put(record)
            summary.add(record)
            bar.update(1)
            bar.set_postfix(done=summary.done, failed=summary.failed, refresh=False)
            failures_in_a_row = failures_in_a_row + 1 if record.status == "error" else 0
            if summary.done + summary.invalid == 0 and failures_in_a_row >= opts.abort_after:
                raise FatalError(
                    f"the first {failures_in_a_row} requests all failed ({record.error}): is the endpoint "
                    f"{display_url(opts.base_url) or '(default)'} up? Nothing was lost; run again to continue"
                )

    # A local model generates a batch at a time: enough workers to fill one.
    width = max(opts.concurrency, getattr(backend, "batch_size", 1))
    workers = [asyncio.create_task(worker(i)) for i in range(max(1, min(width, len(queue))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        bar.close()


@dataclass(frozen=True)
class RunContext:
    """What every request of one `execute` shares, built once: the backend and its generation parameters,
    the rate limits (one budget for all workers), the retry policy and timeout, the jitter's random stream,
    and the summary that counts the retries."""

    backend: Backend
    params: GenParams
    limiter: Limiter
    policy: RetryPolicy
    timeout: float | None  # seconds per attempt; None for local generation, which max_tokens bounds
    rng: random.Random
    parse_retries: int  # times an unusable answer goes back to the model with the error
    summary: Summary

    @classmethod
    def build(cls, backend: Backend, params: GenParams, opts: RunOptions, summary: Summary) -> RunContext:
        return cls(
            backend=backend,
            params=params,
            limiter=Limiter(opts.rpm, opts.tpm),
            policy=RetryPolicy(max_retries=opts.max_retries),
            timeout=opts.timeout if backend.kind == "openai" else None,
            rng=random.Random(),
            parse_retries=opts.parse_retries,
            summary=summary,
        )

    def count_retry(self, error: TransientError, wait: float) -> None:
        self.summary.transport_retries += 1


async def answer(request: Request, key: str, task: Task, ctx: RunContext) -> Record:
    """One request through transport retries and parse retries to its stored outcome."""
    started = time.perf_counter()
    record = Record(
        key=key,
        task=request.task,
        target=request.target,
        prompt_version=request.template.version,
        prompt_digest=request.template.digest,
        model=ctx.backend.identity,
        params=json.dumps(ctx.params.as_dict(), sort_keys=True),
        upstream=request.upstream,
        status="error",
    )
    messages = list(request.messages)
    for round_ in range(ctx.parse_retries + 1):
        estimate = estimate_tokens(messages) + ctx.params.max_tokens
        call = functools.partial(ctx.backend.complete, messages, ctx.params, request.template.prefix)
        try:
            completion, attempts = await with_retries(
                call, ctx.policy, ctx.limiter, estimate, ctx.timeout, ctx.rng, ctx.count_retry
            )
        except TransientError as e:
            record.attempts += ctx.policy.max_retries + 1
            record.status, record.error = "error", f"gave up after {ctx.policy.max_retries + 1} attempts: {e}"
            break
        except RejectedError as e:
            record.attempts += 1
            record.status, record.error = "error", f"rejected: {e}"
            break
        record.attempts += attempts
        ctx.limiter.settle(estimate, completion.tokens_in + completion.tokens_out)
        record.tokens_in += completion.tokens_in
        record.tokens_out += completion.tokens_out
        record.raw = completion.text
        try:
            record.output = task.parse(completion.text)
            record.status, record.error = "done", None
            break
        except InvalidAnswer as e:
            record.status, record.error = "invalid", str(e)
            if round_ < ctx.parse_retries:
                ctx.summary.parse_retries += 1
                # The model sees its answer and what was wrong with it (the conversation grows by two turns).
                messages = [
                    *messages,
                    {"role": "assistant", "content": completion.text},
                    request.template.retry_message(str(e)),
                ]
    record.seconds = time.perf_counter() - started
    # Stored, exported, merged and printed from here on: the one place every message and answer passes
    # through. Every text is scrubbed, the parsed answer too (a model may repeat the key it was sent).
    return record.scrubbed(ctx.backend.scrub)
