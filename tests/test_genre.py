"""GENRE: the run loop against a real chat-completions server on 127.0.0.1 with injected faults, the response
store (resume after a kill), strict parsing, merge into a new dataset, training on it, and the local backend
with the real packaged model."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import SMALL

from oncerec.cli import main
from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset
from oncerec.data.tokenize import WordTokenizer, pack
from oncerec.errors import ConfigError, OncerecError
from oncerec.eval.slices import split_metrics
from oncerec.genre.backends import Backend, Completion, GenParams
from oncerec.genre.limits import (
    FatalError,
    Limiter,
    RetryPolicy,
    TokenBucket,
    TransientError,
    parse_retry_after,
    with_retries,
)
from oncerec.genre.merge import merge
from oncerec.genre.options import RunOptions, TaskOptions
from oncerec.genre.parsing import InvalidAnswer
from oncerec.genre.runner import RunContext, Summary, answer, open_dataset, run_task
from oncerec.genre.store import Store
from oncerec.genre.tasks import DatasetView, Request, Summarize, make_task
from oncerec.genre.templates import load_list, load_template
from oncerec.training.build import build_recommender
from oncerec.training.evaluate import predict_fast, predict_slow
from oncerec.training.pipeline import train
from tests.fake_openai import FakeChatServer, default_reply


@pytest.fixture(scope="session")
def tiny_root() -> Path:
    return open_dataset("demo-tiny", progress=False).root


def _opts(server: FakeChatServer, store: Path, **kw) -> RunOptions:
    return RunOptions(base_url=server.url, model="fake-model", store=str(store), **kw)


def _first_user_messages(root: Path, task: str, limit: int = 0) -> dict[str, str]:
    """target -> the first user message of its request (the fake server's key)."""
    plan = make_task(task, DatasetView(Dataset(root)), TaskOptions()).plan(limit)
    return {r.target: r.messages[1]["content"] for r in plan.requests}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------- parsing, prompts


def test_answers_are_parsed_strictly(tiny_root: Path):
    view = DatasetView(Dataset(tiny_root))
    summarize = make_task("summarize", view, TaskOptions())
    assert summarize.parse('{"title": "Lakers beat Celtics 101-99"}') == {
        "title": "Lakers beat Celtics 101-99"
    }
    assert summarize.parse('```json\n{"title": "Fed holds rates"}\n```') == {"title": "Fed holds rates"}
    for bad, error in [
        ("The title is fine as it is.", "no JSON object"),
        ('{"title": "Fed holds', "not closed"),
        ('{"title": "A", "note": "b"}', 'unexpected "note"'),
        ('{"headline": "A"}', 'missing "title"'),
        ('{"title": 3}', "must be a string"),
        ('{"title": "<rewritten title>"}', "placeholders"),
        ('{"title": ""}', "1 to 30 words"),
        ('{"title": "A",}', "does not parse"),
    ]:
        with pytest.raises(InvalidAnswer, match=error):
            summarize.parse(bad)
    profile = make_task("profile", view, TaskOptions())
    assert profile.parse('{"topics": ["Health", "social  media", "health"], "regions": []}') == {
        "topics": ["health", "social media"],
        "regions": [],
    }
    assert profile.parse('{"topics": ["finance"]}') == {"topics": ["finance"], "regions": []}
    with pytest.raises(InvalidAnswer, match="not one of the allowed values"):
        profile.parse('{"topics": ["cooking"]}')
    with pytest.raises(InvalidAnswer, match="1 to 5"):
        profile.parse(json.dumps({"topics": load_list("topics.txt")[:6]}))
    generate = make_task("generate", view, TaskOptions())
    category = view.categories[0]
    answer = {"title": "A", "abstract": "B", "category": category.upper()}
    assert generate.parse(json.dumps(answer))["category"] == category
    with pytest.raises(InvalidAnswer, match="category `astrology`"):
        generate.parse('{"title": "A", "abstract": "B", "category": "astrology"}')
    books = make_task("profile", view, TaskOptions(domain="books"))
    assert books.parse('{"interests": ["Fantasy", "history"]}') == {"interests": ["fantasy", "history"]}
    assert books.parse('{"interests": ["science fiction"]}') == {"interests": ["science fiction"]}
    with pytest.raises(InvalidAnswer, match="more than 3 words"):
        books.parse('{"interests": ["books about the sea"]}')


def test_prompt_templates_are_versioned_editable_files(tmp_path: Path):
    for name in (
        "summarize-news",
        "summarize-books",
        "profile-news",
        "profile-books",
        "generate-news",
        "generate-books",
    ):
        t = load_template(name)
        assert t.version.startswith(name) and t.system and t.user and t.prefix.startswith("{")
    for name in ("generate-chain-news", "generate-chain-books"):
        assert load_template(name).version.startswith(name)
    assert len(load_list("topics.txt")) == 19
    (tmp_path / "summarize-news.txt").write_text(
        "version: mine-v2\n# note\n[system]\nBe brief.\n[user]\nT: $title\n"
    )
    mine = load_template("summarize-news", tmp_path)
    assert (mine.version, mine.prefix) == ("mine-v2", "")
    assert mine.messages({"title": "x"})[1]["content"] == "T: x"
    assert load_template("profile-news", tmp_path).version == load_template("profile-news").version
    (tmp_path / "profile-news.txt").write_text("[system]\nS\n[user]\nU\n")
    with pytest.raises(OncerecError, match="version"):
        load_template("profile-news", tmp_path)


def test_rate_limits_backoff_and_retry_after():
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(0)
    for attempt in range(6):
        full = min(4.0, 0.5 * 2**attempt)
        assert full / 2 <= policy.backoff(attempt, rng) <= full
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert 3 < parse_retry_after({"retry-after": formatdate(time.time() + 5, usegmt=True)}) <= 5
    assert parse_retry_after({}) is None

    now = [0.0]
    bucket = TokenBucket(600, clock=lambda: now[0])  # 10 a second, bursts of 10
    bucket.take(10)
    assert bucket.wait_time(1) == pytest.approx(0.1)
    bucket.take(25)  # a request larger than a burst leaves the bucket in debt
    now[0] += 1.0
    assert bucket.wait_time(1) == pytest.approx(1.6)

    async def go():
        limiter = Limiter(rpm=6000)  # 100 a second, bursts of 100
        start = time.perf_counter()
        for _ in range(150):
            await limiter.acquire(1)
        paced = time.perf_counter() - start
        calls = []

        async def always_busy():
            calls.append(1)
            raise TransientError("HTTP 503")

        with pytest.raises(TransientError):
            await with_retries(always_busy, RetryPolicy(2, 0.01), Limiter(), 1, None, random.Random(0))
        return paced, len(calls)

    paced, calls = asyncio.run(go())
    assert paced >= 0.4 and calls == 3


# ------------------------------------------------------------------------------------------- the run loop


def test_transport_faults_are_retried_and_counted(tiny_root: Path, tmp_path: Path):
    plan = ["429", "500", "hang", "drop", "bad_body", "bad_content"]
    assigned: dict[str, str] = {}
    lock = threading.Lock()

    def faults(key: str, n: int) -> str | None:
        with lock:
            if key not in assigned and len(assigned) < len(plan):
                assigned[key] = plan[len(assigned)]
        return assigned.get(key) if n == 1 else None

    with FakeChatServer(faults=faults, hang_seconds=1.5) as server:
        opts = _opts(server, tmp_path / "store.sqlite", concurrency=4, timeout=0.6, limit=12)
        [summary] = run_task("summarize", str(tiny_root), opts, progress=False)
    assert (summary.requests, summary.done, summary.failed, summary.cached) == (12, 12, 0, 0)
    assert summary.transport_retries == 5 and summary.parse_retries == 1
    assert summary.tokens_in > 0 and summary.tokens_out > 0
    key_of = {fault: key for key, fault in assigned.items()}
    assert all(server.counts[key_of[f]] == 2 for f in plan)
    assert sum(server.counts.values()) == 12 + len(plan)
    # the 429 was retried only after its Retry-After (1 s)
    sent = [t for key, _, t, _ in server.events if key == key_of["429"]]
    assert sent[1] - sent[0] >= 0.95
    # an unusable answer goes back to the model with what was wrong
    retry = server.last_messages[key_of["bad_content"]]
    assert retry[-2]["role"] == "assistant" and retry[-2]["content"].startswith("Sure!")
    assert "could not be used" in retry[-1]["content"] and "no JSON object" in retry[-1]["content"]
    store = Store(tmp_path / "store.sqlite", readonly=True)
    assert store.count() == {"done": 12}
    assert {r.attempts for r in store.records()} == {1, 2}


def test_answer_reads_the_run_from_one_context():
    """`answer(request, key, task, ctx)`: what is fixed for the run (backend, limits, retries, summary) comes
    from one RunContext; a transport fault and an unusable answer are retried and counted in its summary."""
    replies: list = [TransientError("busy"), "not json"]

    class Scripted(Backend):
        kind = "scripted"

        async def complete(self, messages, params, prefix=""):
            reply = replies.pop(0) if replies else default_reply(messages)
            if isinstance(reply, Exception):
                raise reply
            return Completion(reply, 10, 5)

    task = Summarize(None, TaskOptions(), "news")
    values = {"title": "Item", "abstract": "An abstract.", "category": "news", "subcategory": "x"}
    request = Request("summarize", "N1", task.template.messages(values), task.template)
    summary = Summary("summarize", "scripted:m", task.template.version)
    opts = RunOptions(max_retries=1, parse_retries=1)
    ctx = RunContext.build(Scripted("m"), GenParams(max_tokens=task.max_tokens), opts, summary)
    assert ctx.timeout is None  # a timeout is an OpenAI endpoint's; local backends are bounded by max_tokens
    ctx = dataclasses.replace(ctx, policy=RetryPolicy(max_retries=1, base_delay=0.0))
    record = asyncio.run(answer(request, "k", task, ctx))
    assert (record.status, record.attempts, record.model) == ("done", 3, "scripted:m")
    assert (summary.transport_retries, summary.parse_retries) == (1, 1)
    assert (record.tokens_in, record.tokens_out) == (20, 10)


def test_failures_are_recorded_and_a_rerun_retries_only_request_errors(
    tiny_root: Path, tmp_path: Path, capsys
):
    keys = list(_first_user_messages(tiny_root, "summarize", 6).values())
    broken, failing = keys[0], keys[1]

    def reply(messages):
        return "I think the title is fine." if messages[1]["content"] == broken else default_reply(messages)

    store = tmp_path / "store.sqlite"
    with FakeChatServer(reply=reply, faults=lambda key, n: "500" if key == failing else None) as server:
        args = [
            *("genre", "run", "summarize", "--data", str(tiny_root), "--base-url", server.url),
            *("--model", "m", "--store", str(store), "--limit", "6", "--max-retries", "1"),
            *("--parse-retries", "1", "--price-in", "1", "--price-out", "2", "--quiet"),
        ]
        assert main(args) == 0  # failures are recorded, the run itself succeeded
        out = capsys.readouterr().out
        assert "4 done, 0 cached, 2 failed (1 invalid answers, 1 request errors)" in out
        assert "not asked: 292 beyond --limit" in out and "estimated cost $0.00" in out
        records = {r.target: r for r in Store(store, readonly=True).records()}
        invalid = next(r for r in records.values() if r.status == "invalid")
        assert invalid.raw == "I think the title is fine." and "no JSON object" in invalid.error
        assert invalid.attempts == 2 and invalid.output is None
        error = next(r for r in records.values() if r.status == "error")
        assert "HTTP 500" in error.error and error.attempts == 2
        assert (server.counts[broken], server.counts[failing]) == (2, 2)

        assert main(args) == 0  # only the request error is sent again
        assert "0 done, 5 cached, 1 failed (0 invalid answers, 1 request errors)" in capsys.readouterr().out
        assert (server.counts[broken], server.counts[failing], sum(server.counts.values())) == (2, 4, 10)

        assert main([*args, "--retry-invalid"]) == 0
        assert server.counts[broken] == 4
    capsys.readouterr()


def test_api_key_is_sent_but_never_stored_or_printed(tiny_root: Path, tmp_path: Path, capsys, monkeypatch):
    secret = "sk-test-SECRET-0123456789abcdef"
    wrong = "sk-wrong-KEY-fedcba9876543210"
    store = tmp_path / "store.sqlite"
    with FakeChatServer(api_key=secret) as server:
        args = [
            *("genre", "run", "profile", "--data", str(tiny_root), "--base-url", server.url, "--model", "m"),
            *("--store", str(store), "--limit", "3", "--api-key-env", "MY_LLM_KEY", "--quiet"),
        ]
        monkeypatch.setenv("MY_LLM_KEY", wrong)
        assert main(args) == 2  # the server quotes the wrong key in its 401: the run stops, quietly
        wrong_run = capsys.readouterr()
        assert "refused the API key" in wrong_run.err
        monkeypatch.setenv("MY_LLM_KEY", secret)
        assert main(args) == 0
        right_run = capsys.readouterr()
        assert main(["genre", "export", "--store", str(store), "--out", str(tmp_path / "all.jsonl")]) == 0
    assert f"Bearer {secret}" in server.authorization and "3 done" in right_run.out
    for text in (wrong_run.out, wrong_run.err, right_run.out, right_run.err):
        assert secret not in text and wrong not in text and "fedcba98" not in text
    for path in tmp_path.iterdir():  # the store, its WAL and the export
        data = path.read_bytes()
        assert secret.encode() not in data and wrong.encode() not in data


def test_no_message_of_a_run_carries_the_key_or_the_url_password(
    tiny_root: Path, tmp_path: Path, capsys, monkeypatch
):
    """A 2xx answer that is not JSON is quoted in the stored error (here a proxy page that echoes the headers);
    a --base-url with user:password@ is refused without printing the password."""
    secret, password = "sk-test-SECRET-0123456789abcdef", "hunter2-pw"
    store = tmp_path / "store.sqlite"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    with FakeChatServer(api_key=secret, faults=lambda key, n: "echo_auth") as server:
        args = [
            *("genre", "run", "summarize", "--data", str(tiny_root), "--model", "m", "--store", str(store)),
            *("--limit", "2", "--api-key-env", "MY_LLM_KEY", "--max-retries", "0", "--abort-after", "2"),
            "--quiet",
        ]
        assert main([*args, "--base-url", server.url]) == 2  # every request failed: the run stops, says so
        run = capsys.readouterr()
        assert main(["genre", "export", "--store", str(store), "--out", str(tmp_path / "all.jsonl")]) == 0
        with_password = server.url.replace("http://", f"http://admin:{password}@")
        assert main([*args, "--base-url", with_password]) == 2
        refused = capsys.readouterr()
    assert f"Bearer {secret}" in server.authorization  # the key was sent
    exported = (tmp_path / "all.jsonl").read_text()
    assert "malformed response" in exported and "proxy: Bearer ***" in exported
    assert "without user:password@" in refused.err and server.url.removesuffix("/v1") in refused.err
    for text in (run.out, run.err, exported, refused.out, refused.err):
        assert secret not in text and password not in text and "0123456" not in text
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes()


def test_a_refused_connection_is_reported_as_refused(tiny_root: Path, tmp_path: Path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        *("genre", "run", "summarize", "--data", str(tiny_root), "--base-url", f"http://127.0.0.1:{port}/v1"),
        *("--model", "m", "--store", str(tmp_path / "s.sqlite"), "--limit", "2", "--max-retries", "0"),
        *("--abort-after", "2", "--quiet"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "connection refused" in err and "timed out" not in err


@pytest.mark.integration
def test_a_killed_run_resumes_without_repeating_completed_requests(tiny_root: Path, tmp_path: Path):
    store = tmp_path / "store.sqlite"
    message = _first_user_messages(tiny_root, "summarize", 80)
    with FakeChatServer(latency=0.05) as server:
        command = [
            *(sys.executable, "-m", "oncerec.cli", "genre", "run", "summarize", "--data", str(tiny_root)),
            *("--base-url", server.url, "--model", "m", "--store", str(store), "--limit", "80"),
            *("--concurrency", "4", "--quiet"),
        ]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        done, deadline = 0, time.time() + 60
        while done < 20 and time.time() < deadline and child.poll() is None:
            time.sleep(0.02)
            try:
                with sqlite3.connect(store) as db:
                    done = db.execute("SELECT COUNT(*) FROM responses WHERE status='done'").fetchone()[0]
            except sqlite3.OperationalError:  # not created yet
                pass
        child.kill()
        child.wait()
        stored = {r.target for r in Store(store, readonly=True).records()}
        assert 20 <= len(stored) < 80, "the run was not killed midway"
        opts = RunOptions(base_url=server.url, model="m", store=str(store), concurrency=8, limit=80)
        [summary] = run_task("summarize", str(tiny_root), opts, progress=False)
    assert (summary.cached, summary.done, summary.failed) == (len(stored), 80 - len(stored), 0)
    assert all(server.counts[message[t]] == 1 for t in stored)  # nothing completed was asked again
    assert sum(server.counts.values()) - 80 <= 4  # at most the requests in flight at the kill
    assert Store(store, readonly=True).count() == {"done": 80}


def test_dry_run_estimates_and_calls_nothing(tiny_root: Path, capsys, mind_dir: Path):
    with FakeChatServer() as server:
        args = [
            "genre",
            "run",
            "generate",
            "--data",
            str(tiny_root),
            "--base-url",
            server.url,
            "--model",
            "m",
        ]
        assert main([*args, "--dry-run", "--chain", "--price-in", "0.15", "--price-out", "0.6"]) == 0
        opts = RunOptions(base_url=server.url, model="m", dry_run=True, chain=True, price_in=1, price_out=2)
        profile, generate = run_task("generate", str(tiny_root), opts, progress=False)
        # a raw MIND folder is prepared on first use
        [raw] = run_task("summarize", str(mind_dir), RunOptions(dry_run=True), progress=False)
    out = capsys.readouterr().out
    assert sum(server.counts.values()) == 0 and not (tiny_root / "genre.sqlite").exists()
    assert "nothing was sent" in out and "to send" in out
    assert (profile.task, generate.task) == (
        "profile",
        "generate",
    ) and generate.requests == profile.requests > 0
    assert generate.estimated_tokens_in > 0 and generate.estimated_tokens_out == 96 * generate.requests
    assert generate.cost == pytest.approx(
        (generate.estimated_tokens_in + 2 * generate.estimated_tokens_out) / 1e6
    )
    assert generate.store == str(tiny_root / "genre.sqlite")
    assert raw.requests == 5 and raw.model == "local:smollm2-135m"


def test_chain_generation_gives_the_profile_to_the_generator(tiny_root: Path, tmp_path: Path):
    with FakeChatServer() as server:
        opts = _opts(server, tmp_path / "store.sqlite", chain=True, items_per_user=2)
        profile, generate = run_task("generate", str(tiny_root), opts, progress=False)
    assert profile.done == profile.requests > 0 and generate.done == generate.requests == 2 * profile.requests
    asked = [key for key in server.counts if key.startswith("Interests of the user:")]
    assert len(asked) == profile.requests and all(
        k.startswith("Interests of the user: topics: ") for k in asked
    )
    records = list(Store(tmp_path / "store.sqlite", readonly=True).records("generate"))
    assert {r.target[-2:] for r in records} == {"#0", "#1"} and all(r.upstream for r in records)


def test_an_unreachable_endpoint_stops_the_run(tiny_root: Path, tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = RunOptions(
        base_url=f"http://127.0.0.1:{port}/v1", model="m", store=str(tmp_path / "s.sqlite"), max_retries=0
    )
    with pytest.raises(FatalError, match="all failed"):
        run_task(
            "summarize",
            str(tiny_root),
            RunOptions(**{**opts.__dict__, "abort_after": 3}),
            progress=False,
        )
    with pytest.raises(FatalError, match="--model is required"):
        run_task("summarize", str(tiny_root), RunOptions(backend="openai"), progress=False)


# ------------------------------------------------------------------------------------------- merge, training


@pytest.fixture(scope="module")
def merged(tiny_root: Path, tmp_path_factory) -> SimpleNamespace:
    """A store with all three tasks (one item's summary unusable), merged into a new dataset."""
    tmp = tmp_path_factory.mktemp("genre-merge")
    store = tmp / "store.sqlite"
    bad_item, bad_key = next(iter(_first_user_messages(tiny_root, "summarize", 1).items()))

    def reply(messages):
        return "no idea" if messages[1]["content"] == bad_key else default_reply(messages)

    with FakeChatServer(reply=reply) as server:
        opts = RunOptions(base_url=server.url, model="m", store=str(store), concurrency=16, parse_retries=0)
        for task in ("summarize", "profile", "generate"):
            run_task(task, str(tiny_root), opts, progress=False)
    before = _tree_digest(tiny_root)
    out = tmp / "merged"
    report = merge(tiny_root, store, out)
    return SimpleNamespace(root=out, store=store, report=report, before=before, bad_item=bad_item, tmp=tmp)


def test_merge_writes_a_new_dataset_and_leaves_the_source(merged: SimpleNamespace, tiny_root: Path):
    assert _tree_digest(tiny_root) == merged.before  # hard links, but nothing written through them
    assert [p.name for p in merged.tmp.iterdir() if p.name.startswith(".")] == []
    source, ds = Dataset(tiny_root), Dataset(merged.root)
    assert ds.text_fields == [*source.text_fields, "summary"] and ds.manifest["user_attributes"] == [
        "topic",
        "region",
    ]
    assert not (merged.root / "genre.sqlite").exists()
    # summaries: tokenized with the source's own vocabulary; the fallback for a failed item is its title
    table = ds.items_table
    ids, titles, summaries = (table.column(k).to_pylist() for k in ("id", "title", "summary"))
    n = source.num_items
    for i in range(1, n):
        expected = titles[i] if ids[i] == merged.bad_item else f"Report: {titles[i]}"
        assert summaries[i] == expected
    assert merged.report["summarize"]["fallback"] == 1
    assert merged.report["summarize"]["failed_targets"] == {"invalid": 1}
    assert (merged.root / "vocab" / "word.json").read_bytes() == (
        tiny_root / "vocab" / "word.json"
    ).read_bytes()
    tokens, lengths = ds.tokens("word", "summary")
    expected_ids, expected_len, _ = pack(
        WordTokenizer(source.vocab("word")).encode(summaries), tokens.shape[1]
    )
    expected_len[0] = 0
    np.testing.assert_array_equal(tokens, expected_ids)
    np.testing.assert_array_equal(lengths, expected_len)
    # generated items: new rows, flagged, in front of their users' real clicks
    added = merged.report["generate"]["items"]
    assert added > 0 and ds.num_items == n + added
    synthetic = np.load(merged.root / "items" / "synthetic.npy")
    assert synthetic[:n].sum() == 0 and synthetic[n:].all() and all(table.column("synthetic").to_pylist()[n:])
    assert all("#" in i for i in ids[n:]) and set(table.column("category").to_pylist()[n:]) <= set(
        source.vocab("category")
    )
    assert np.asarray(ds.categorical("category"))[n:].min() > 0
    for f in ds.text_fields:
        assert ds.tokens("word", f)[0].shape[0] == n + added
    items, length, user = (np.asarray(a) for a in ds.histories)
    old_items, old_length, _ = (np.asarray(a) for a in source.histories)
    users = source.vocab("user")
    for row in np.flatnonzero(length != old_length):
        assert length[row] == old_length[row] + 1 and items[row, 0] >= n
        assert ids[items[row, 0]].startswith(users[user[row]] + "#")
        np.testing.assert_array_equal(items[row, 1 : length[row]], old_items[row, : old_length[row]])
    # profiles: value ids (most relevant first) with 1 / rank weights, and their vocabularies
    topics = np.load(merged.root / "users" / "topic.npy")
    weights = np.load(merged.root / "users" / "topic.weight.npy")
    vocab = ds.vocab("topic")
    assert topics.shape == (len(users), 2) and set(vocab[1:]) <= set(load_list("topics.txt"))
    assert merged.report["profile"]["with_profile"] == (topics[:, 0] > 0).sum() > 0
    np.testing.assert_allclose(weights[topics[:, 0] > 0][0], [1.0, 0.5])
    with pytest.raises(OncerecError, match="not empty"):
        merge(tiny_root, merged.store, merged.root)
    with pytest.raises(OncerecError, match="never modified"):
        merge(tiny_root, merged.store, tiny_root)


def test_export_writes_every_record_as_json_lines(merged: SimpleNamespace, tmp_path: Path):
    out = tmp_path / "answers.jsonl"
    assert main(["genre", "export", "--store", str(merged.store), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == sum(Store(merged.store, readonly=True).count().values())
    assert {r["task"] for r in lines} == {"summarize", "profile", "generate"}
    assert {"key", "target", "prompt_version", "model", "params", "status", "output", "raw", "error"} <= set(
        lines[0]
    )


def test_training_on_the_merged_dataset_with_summaries_and_profiles(
    merged: SimpleNamespace, tiny_root: Path, tmp_path: Path
):
    cfg = build_config(
        [
            f"data.source={merged.root}",
            "model=naml",
            "model.item_fields=[summary,abstract,category,subcategory]",
            "model.user_attributes=true",
            *SMALL,
            "exp.max_steps=3",
            "exp.epochs=1",
            f"exp.out_dir={tmp_path / 'run'}",
        ],
    )
    run, metrics = train(cfg, progress=False)
    run_dir = run.run_dir
    assert 0 <= metrics["test"]["auc"] <= 1
    # the users with generated content: a slice of every evaluation of a dataset with generated items
    ds, source = Dataset(merged.root), Dataset(tiny_root)
    test = ds.split("test")
    items, lengths, _ = ds.histories
    has = np.array([ds.generated_items[items[h, : lengths[h]]].any() for h in np.asarray(test.history)])
    generated = metrics["test"]["generated_users"]
    assert 0 < has.sum() < len(has) and generated["impressions"] == has.sum()
    assert generated["rows"] == np.diff(np.asarray(test.offsets))[has].sum()
    assert "users with generated items" in (run_dir / "report.md").read_text()
    # cold users are the same impressions with or without the generated items in their histories
    scores = np.random.default_rng(0).standard_normal(len(test.item))
    before = split_metrics(source.split("test"), scores, source)
    after = split_metrics(test, scores, ds)
    assert before["cold_users"] == after["cold_users"] and after["cold_users"]["impressions"] > 0
    assert "generated_users" not in before and source.generated_items is None


# MINER's category bias pools the interest vectors per candidate, in the predictor: the profile needs it off
@pytest.mark.parametrize(
    "model", [["model=naml"], ["model=miner", "model.miner_category_bias=false"]], ids=["naml", "miner"]
)
def test_fast_evaluation_equals_slow_path_with_user_attributes(merged: SimpleNamespace, model: list[str]):
    ds = Dataset(merged.root)
    cfg = build_config([*model, *SMALL, "model.user_attributes=true"])
    torch.manual_seed(0)
    model = build_recommender(cfg.model, cfg.embed, ds)
    valid = ds.split("valid")
    split = valid.select(np.arange(60))  # the first 60 impressions keep it quick
    fast = predict_fast(model, ds, split, 37, "cpu")
    slow = predict_slow(model, ds, split, 11, "cpu")
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5)
    # the profile changes the user vector of a user who has one, and leaves the others' alone
    clicked = torch.randn(2, 3, cfg.model.hidden_size)
    mask = torch.ones(2, 3, dtype=torch.bool)
    has_profile = int(np.flatnonzero(np.load(merged.root / "users" / "topic.npy")[:, 0])[0])
    model.eval()
    with torch.no_grad():
        plain = model.user_encoder(clicked, mask, torch.tensor([0, has_profile]))
        fused = model.encode_users(clicked, mask, torch.tensor([0, has_profile]))
    assert torch.equal(fused[0], plain[0]) and not torch.allclose(fused[1], plain[1])


def test_user_attributes_need_profiles_and_a_pooled_user_encoder(merged: SimpleNamespace, tiny_root: Path):
    cfg = build_config(["model=naml", *SMALL, "model.user_attributes=true"])
    with pytest.raises(ConfigError, match="no user attributes"):
        build_recommender(cfg.model, cfg.embed, Dataset(tiny_root))
    with pytest.raises(ConfigError, match="the `sequence` user encoder gives none"):
        build_config(["model=din", *SMALL, "model.user_attributes=true"])  # the schema's check
    with pytest.raises(ConfigError, match="miner_category_bias=false"):
        build_config(["model=miner", *SMALL, "model.user_attributes=true"])


# ------------------------------------------------------------------------------------------- local backend


@pytest.mark.integration
def test_local_backend_with_the_packaged_model(tiny_root: Path, tmp_path: Path):
    """The real SmolLM2-135M-Instruct on three items: every request ends done or recorded as invalid."""
    opts = RunOptions(
        store=str(tmp_path / "store.sqlite"), limit=3, batch_size=3, max_tokens=32, parse_retries=1
    )
    [summary] = run_task("summarize", str(tiny_root), opts, progress=False)
    assert summary.model == "local:smollm2-135m" and summary.requests == 3
    assert summary.done + summary.invalid == 3 and summary.errors == 0 and summary.tokens_out > 0
    records = list(Store(tmp_path / "store.sqlite", readonly=True).records())
    assert len(records) == 3 and all(r.raw.startswith('{"title": "') for r in records)
    [again] = run_task("summarize", str(tiny_root), opts, progress=False)
    assert (again.cached, again.done, again.tokens_in) == (3, 0, 0)


def test_http_client_prefers_the_aiohttp_transport(monkeypatch):
    """The aiohttp transport (the `openai[aiohttp]` extra) halves the client's CPU per request; without the
    extra, the client's default transport is used, with the same connection limits."""
    import openai

    from oncerec.genre.backends import _http_client

    fast = _http_client(7, 5.0)
    assert isinstance(fast, openai.DefaultAioHttpClient)

    def missing(**_):
        raise RuntimeError(
            "To use the aiohttp client you must have installed the package with the `aiohttp` extra"
        )

    monkeypatch.setattr(openai, "DefaultAioHttpClient", missing)
    plain = _http_client(7, 5.0)
    assert not isinstance(plain, type(fast))
    assert plain._transport._pool._max_connections == 7


def test_books_summaries_profiles_and_generated_books_merge(tmp_path: Path):
    """The books domain end to end: descriptions, one-word interests, chain-generated books with a shelf from
    the data's shelves, merged into a new Goodreads dataset."""
    from oncerec.data.dataset import resolve_dataset

    cfg = build_config(["data=demo-goodreads", "data.demo_scale=tiny", "data.user_min_positives=5"]).data
    root = resolve_dataset(cfg, progress=False)
    view = DatasetView(Dataset(root))
    shelf = view.subcategories[0]
    generate = make_task("generate", view, TaskOptions())
    assert generate.domain == "books"
    answer = {"title": "The Long Road", "description": "A quiet novel.", "shelf": shelf.upper()}
    assert generate.parse(json.dumps(answer)) == {
        "title": "The Long Road",
        "abstract": "A quiet novel.",
        "subcategory": shelf,
    }
    with pytest.raises(InvalidAnswer, match="shelf `astrology`"):
        generate.parse(json.dumps({**answer, "shelf": "astrology"}))
    store = tmp_path / "store.sqlite"
    with FakeChatServer() as server:
        opts = RunOptions(base_url=server.url, model="m", store=str(store), concurrency=16, chain=True)
        (summaries,) = run_task("summarize", str(root), opts, progress=False)
        profile, books = run_task("generate", str(root), opts, progress=False)
    assert summaries.done == summaries.requests > 0
    assert profile.done == profile.requests > 0 and books.done == books.requests > 0
    shown = [m for m in server.last_messages.values() if '"shelf"' in m[0]["content"]]
    assert shown and all(f"- {shelf}" in m[0]["content"] for m in shown)  # the shelves are listed
    assert all(m[1]["content"].startswith("Interests of the user: fiction, history") for m in shown)
    report = merge(root, store, tmp_path / "merged")
    assert report["generate"]["items"] == books.done
    ds = Dataset(tmp_path / "merged")
    first = report["generate"]["first_item"]
    table = ds.items_table
    assert table.column("synthetic").to_pylist()[first:] == [True] * books.done
    assert set(table.column("subcategory").to_pylist()[first:]) == {shelf}
    sub = np.load(tmp_path / "merged" / "items" / "subcategory.npy")[first:]
    cat = np.load(tmp_path / "merged" / "items" / "category.npy")[first:]
    assert (sub == ds.vocab("subcategory").index(shelf)).all() and (cat == 0).all()  # no author
    assert table.column("abstract").to_pylist()[first].startswith("A sequel to ")


def test_merge_renders_the_language_model_prompt_again_with_the_summary(tmp_path: Path):
    """`genre merge --prompt`: DIRE reads the generated description beside the title, in its own tokens."""
    from oncerec.data.dataset import resolve_dataset
    from oncerec.data.tokenize import HFTokenizer

    args = ["data=demo-goodreads", "data.demo_scale=tiny", "data.user_min_positives=5"]
    lm = [*args, "data.tokenizers=[word,minilm]", "data.text_fields=[title,abstract,prompt]"]
    root = resolve_dataset(build_config([*lm, "data.prompt=book title: {title}"]).data, progress=False)
    store = tmp_path / "store.sqlite"
    with FakeChatServer() as server:
        opts = RunOptions(base_url=server.url, model="m", store=str(store), concurrency=16)
        run_task("summarize", str(root), opts, progress=False)
    template = "book title: {title} description: {summary}"
    report = merge(root, store, tmp_path / "merged", prompt=template)
    assert report["prompt"] == template
    ds = Dataset(tmp_path / "merged")
    table = ds.items_table
    title, summary = (table.column(c).to_pylist()[1] for c in ("title", "summary"))
    assert table.column("prompt").to_pylist()[1] == f"book title: {title} description: {summary}"
    ids, lengths = ds.tokens("minilm", "prompt")
    expected = HFTokenizer("minilm").encode([f"book title: {title} description: {summary}"])[0]
    assert ids[1, : lengths[1]].tolist() == expected[: ids.shape[1]] and lengths[0] == 0
    assert ds.manifest["data_config"]["prompt"] == template
    with pytest.raises(OncerecError, match=r"unknown field \{author\}; this dataset has \{title\}"):
        merge(root, store, tmp_path / "bad", prompt="{author}: {title}")
    plain = resolve_dataset(build_config(args).data, progress=False)
    with pytest.raises(OncerecError, match="has no `prompt` text field"):
        merge(plain, store, tmp_path / "bad2", prompt=template)
