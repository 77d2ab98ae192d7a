"""Serving (`oncerec export`, `oncerec serve`): the real server in a child process, called over HTTP; the
parts that need no HTTP (two-stage ranking, GENRE profiles, several processes) on the service itself."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import SMALL

from benchmarks.serve import ServerProcess, ServeSizes, serve_rows
from benchmarks.suite import Sizes, run_bench
from oncerec.cli import main
from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.errors import OncerecError
from oncerec.serve.export import export_for, load_export
from oncerec.serve.service import Answer, Query, RequestError, Service
from oncerec.training.pipeline import train
from oncerec.training.session import load_run

QUIET = {"progress": False}


def _train(tmp_path_factory, name: str, *overrides: str, steps: int = 2) -> Path:
    out = tmp_path_factory.mktemp("runs") / name
    cfg = build_config([*overrides, "exp=quick", *SMALL, f"exp.max_steps={steps}", f"exp.out_dir={out}"])
    train(cfg, **QUIET)
    return out


def _export(run: Path, out: Path, *options: str) -> Path:
    assert main(["export", str(run), "--out", str(out), "--quiet", *options]) == 0
    return out


@pytest.fixture(scope="module")
def naml_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "naml", "data=demo-tiny", "model=naml")


@pytest.fixture(scope="module")
def naml_export(naml_run: Path, tmp_path_factory) -> Path:
    return _export(naml_run, tmp_path_factory.mktemp("exports") / "naml")


class Server(ServerProcess):
    """`oncerec serve` in a child process on a free port of 127.0.0.1, with an HTTP client."""

    def __init__(self, path: Path, *options: str):
        super().__init__(path, *options, timeout=120)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def recommend(self, history: list[str], **body) -> dict:
        response = self.http.post("/recommend", json={"history": history, **body})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def server(naml_export: Path):
    s = Server(naml_export, "--max-body-bytes", "4096")
    yield s
    s.stop()


def _ids(answer: dict) -> list[str]:
    return [x["id"] for x in answer["items"]]


def _histories(ids: list[str], n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[ids[i] for i in rng.integers(1, len(ids), rng.integers(1, 9))] for _ in range(n)]


def _item_content(dataset: Dataset, index: int) -> dict[str, str]:
    row = dataset.items_table.slice(index, 1).to_pylist()[0]
    return {k: row[k] for k in ("title", "abstract", "category", "subcategory")}


# --------------------------------------------------------------------------------------------- over HTTP


@pytest.mark.integration
def test_recommend_over_http_is_oncerec_recommend(server: Server, naml_run: Path, capsys):
    run = load_run(naml_run)
    ids = run.dataset.items_table.column("id").to_pylist()
    users = run.dataset.vocab("user")
    for n, history in enumerate(_histories(ids, 25)):
        user = users[n] if n % 2 else None  # the dataset's users and none (the unknown user)
        expected = run.recommend(user, history, 10)
        answer = server.recommend(history, user=user, k=10)
        assert answer["source"] == "model"
        assert _ids(answer) == [item_id for item_id, _, _ in expected]
        np.testing.assert_allclose(
            [x["score"] for x in answer["items"]], [s for _, s, _ in expected], atol=1e-5
        )
        assert not set(_ids(answer)) & set(history)  # exclude_history defaults to true
    # the command itself, for one history
    history = _histories(ids, 1, seed=7)[0]
    assert main(["recommend", str(naml_run), "--history", ",".join(history), "--top-k", "5"]) == 0
    printed = [line.split()[2] for line in capsys.readouterr().out.splitlines()]
    assert _ids(server.recommend(history, k=5)) == printed


@pytest.mark.integration
def test_concurrent_requests_get_the_answers_they_get_one_at_a_time(server: Server, naml_export: Path):
    """Requests in flight together are answered in batches (the app's batcher): each gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    ids = Service(naml_export).catalogue.ids
    before = _batches(server)
    bodies = [{"history": h, "k": 1 + n % 12} for n, h in enumerate(_histories(ids, 48, seed=11))]
    alone = [server.recommend(**b) for b in bodies]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda b: httpx.post(f"{server.url}/recommend", json=b, timeout=30), bodies))
    assert [r.status_code for r in together] == [200] * len(bodies)
    for a, b in zip(alone, together, strict=True):
        assert _ids(a) == _ids(b.json())
        np.testing.assert_allclose(
            [x["score"] for x in a["items"]], [x["score"] for x in b.json()["items"]], atol=1e-5
        )
    after = _batches(server)
    assert after["requests"] - before["requests"] == 2 * len(bodies)
    # how many shared a batch over HTTP depends on the machine's timing: test_requests_in_flight_share_a_batch


def test_requests_in_flight_share_a_batch():
    """Requests that arrive while a batch is computed are answered together by the next call, each with its
    own answer."""
    import time

    from oncerec.serve.app import _Batcher

    class Slow:
        def recommend_many(self, queries: list[Query]) -> list[Answer]:
            time.sleep(0.05)  # the model's call: the other requests arrive meanwhile
            return [Answer([(q.history[0], 1.0)], "model") for q in queries]

    async def ten_at_once() -> tuple[list[str], _Batcher]:
        batcher = _Batcher(Slow(), parallel=1)
        answers = await asyncio.gather(*(batcher.answer(Query([f"N{n}"], None, 1)) for n in range(10)))
        return [a.items[0][0] for a in answers], batcher

    items, batcher = asyncio.run(asyncio.wait_for(ten_at_once(), 10))
    assert items == [f"N{n}" for n in range(10)]
    assert batcher.requests == 10 and batcher.batches <= 2  # the first alone at most, the rest together


def test_a_request_right_after_a_batch_ends_is_answered():
    """The caller of a batch's last answer wakes before the batch loop's task is finished: a request it makes
    at once must start a loop of its own (it once waited forever there)."""
    from oncerec.serve.app import _Batcher

    class Echo:
        def recommend_many(self, queries: list[Query]) -> list[Answer]:
            return [Answer([(q.history[0], 1.0)], "model") for q in queries]

    async def one_after_another() -> list[str]:
        batcher = _Batcher(Echo(), parallel=1)
        asked = [Query([f"N{n}"], None, 1) for n in range(5)]
        # awaited in this task itself: a task of its own (wait_for's) would start after the callback
        return [(await batcher.answer(q)).items[0][0] for q in asked]

    async def within_a_time_limit() -> list[str]:
        return await asyncio.wait_for(one_after_another(), 10)

    assert asyncio.run(within_a_time_limit()) == [f"N{n}" for n in range(5)]


def _batches(server: Server) -> dict[str, float]:
    lines = server.http.get("/metrics").text.splitlines()
    return {
        what: float(next(x.split()[1] for x in lines if x.startswith(f"oncerec_batch_{what}_total ")))
        for what in ("requests", "batches")
    }


def test_a_user_without_history_gets_the_most_clicked_items(server: Server, naml_export: Path):
    clicks = np.load(naml_export / "popularity.npy")
    ids = json.loads((naml_export / "data" / "ids.json").read_text())
    top = (np.argsort(-clicks[1:], kind="stable") + 1)[:5]
    for body in ({}, {"user": "U-never-seen"}):
        answer = server.recommend([], k=5, **body)
        assert answer["source"] == "popularity"
        assert _ids(answer) == [ids[i] for i in top]
        assert [x["score"] for x in answer["items"]] == clicks[top].tolist()


def test_bad_requests_get_a_4xx_naming_the_field(server: Server):
    known = server.recommend([], k=1)["items"][0]["id"]
    item = {"id": "N-x", "title": "A title"}
    cases = [
        ("/recommend", {"history": [known], "k": 0}, 422, "k"),
        ("/recommend", {"history": [known], "k": 1001}, 422, "k"),
        ("/recommend", {"history": [known], "k": "3"}, 422, "k"),
        ("/recommend", {"history": known}, 422, "history"),
        ("/recommend", {"history": [known, 5]}, 422, "history[1]"),
        ("/recommend", {"history": [known, "N-nowhere"]}, 422, "history"),
        ("/recommend", {"histry": [known]}, 422, "histry"),
        ("/recommend", {"user": 5}, 422, "user"),
        ("/recommend", {"exclude_history": "yes"}, 422, "exclude_history"),
        ("/recommend", b"{not json", 422, "body"),
        ("/recommend", [known], 422, "body"),
        ("/recommend", {"history": [known] * 1000}, 413, "body"),  # over --max-body-bytes 4096
        ("/items", {"items": []}, 422, "items"),
        ("/items", {"items": ["N-x"]}, 422, "items[0]"),
        ("/items", {"items": [{"title": "No id"}]}, 422, "items[0].id"),
        ("/items", {"items": [{**item, "titel": "typo"}]}, 422, "items[0].titel"),
        ("/items", {"items": [{**item, "title": 3}]}, 422, "items[0].title"),
        ("/items", {"items": [item, item]}, 422, "items[1].id"),
        ("/items", {"items": [{"id": "N-y", "category": ""}]}, 422, "items[0]"),
        ("/items", {"item": [item]}, 422, "items"),
        ("/items", {"items": [item], "persist": True}, 422, "persist"),
    ]
    for path, body, status, field in cases:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = server.http.post(path, content=data)
        assert (response.status_code, response.json()["field"]) == (status, field), (
            path,
            body,
            response.text,
        )
        assert response.json()["error"]
    unknown = server.http.post("/recommend", json={"history": [known, "N-nowhere"]}).json()
    assert unknown["unknown"] == ["N-nowhere"] and "N-nowhere" in unknown["error"]
    assert server.http.get("/nowhere").json() == {"error": "Not Found", "field": "path"}
    assert server.http.get("/recommend").status_code == 405
    assert server.http.get("/health").json()["items"] == 298  # nothing was added by a bad request


def test_health_and_metrics(server: Server):
    health = server.http.get("/health").json()
    assert health | {"items": 0} == {
        "pid": server.process.pid,  # one worker: the process started
        "status": "ok",
        "model": "naml",
        "ranking": "inner_product",
        "index": "flat",
        "items": 0,
        "adds_items": True,
        "persist": False,
    }
    server.recommend([], k=3)
    server.http.post("/recommend", json={"k": 0})
    text = server.http.get("/metrics").text
    assert 'oncerec_requests_total{endpoint="/recommend",status="200"}' in text
    assert 'oncerec_requests_total{endpoint="/recommend",status="422"}' in text
    assert "# TYPE oncerec_request_duration_seconds histogram" in text
    assert 'oncerec_request_duration_seconds_bucket{endpoint="/recommend",le="+Inf"}' in text
    assert f"\noncerec_index_items {float(health['items'])}\n" in text
    popular = next(
        line
        for line in text.splitlines()
        if line.startswith('oncerec_recommendations_total{source="popularity"}')
    )
    assert float(popular.split()[-1]) >= 1
    assert server.http.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    asked = server.http.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert asked.headers["content-type"].startswith("application/openmetrics-text")
    assert asked.text.endswith("# EOF\n") and "oncerec_recommendations_total" in asked.text


@pytest.mark.integration
def test_an_added_item_is_recommended_and_survives_a_kill(naml_export: Path, tmp_path: Path):
    export = tmp_path / "export"
    shutil.copytree(naml_export, export)
    vectors = np.load(export / "vectors.npy")
    # The item of largest norm: NAML's user vector of a one-click history is that item's vector, so an item
    # with the same content (the same vector) scores above every other item for it.
    x = int(np.argmax(np.linalg.norm(vectors[1:], axis=1))) + 1
    ids = json.loads((export / "data" / "ids.json").read_text())
    content = _item_content(Dataset(resolve_dataset(build_config(["data=demo-tiny"]).data, **QUIET)), x)
    norm2 = float(vectors[x] @ vectors[x])

    server = Server(export, "--persist")
    before = server.recommend([ids[x]], k=10)
    assert "N-new" not in _ids(before)
    added = server.http.post("/items", json={"items": [{"id": "N-new", **content}]})
    assert added.json() == {"added": 1, "replaced": 0, "items": 299}
    answer = server.recommend([ids[x]], k=10)
    assert answer["items"][0]["id"] == "N-new"
    assert answer["items"][0]["score"] == pytest.approx(norm2, rel=1e-5)
    assert _ids(answer)[1:] == _ids(before)[:9]
    # the item itself back in: the two share the top (the same vector)
    assert set(_ids(server.recommend([ids[x]], k=2, exclude_history=False))) == {ids[x], "N-new"}
    assert server.recommend(["N-new"], k=3)["source"] == "model"  # a known item in a history from now on
    server.kill()

    # a writer killed in the middle of its transaction leaves nothing, and no lock behind
    store = export / "added" / "items.sqlite"
    half = json.dumps([{"id": "N-half", "title": "Cut short"}])
    cut_short = (
        "import os, signal, sqlite3, sys; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "db.execute('BEGIN IMMEDIATE'); "
        "db.execute('INSERT INTO requests (items, vectors) VALUES (?, ?)', (sys.argv[2], b'')); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert subprocess.run([sys.executable, "-c", cut_short, str(store), half]).returncode == -signal.SIGKILL
    server = Server(export, "--persist")
    assert server.http.get("/health").json()["items"] == 299
    assert server.recommend([ids[x]], k=10) == answer
    replaced = server.http.post(
        "/items", json={"items": [{"id": "N-new", "title": "Something else entirely"}]}
    )
    assert replaced.json() == {"added": 0, "replaced": 1, "items": 299}
    assert "N-new" not in _ids(server.recommend([ids[x]], k=1))
    server.stop()
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT seq, items FROM requests ORDER BY seq").fetchall()
    assert [(seq, [item["id"] for item in json.loads(items)]) for seq, items in rows] == [
        (1, ["N-new"]),
        (2, ["N-new"]),
    ]


@pytest.mark.integration
def test_the_approximate_index_finds_what_the_exact_one_finds(tmp_path_factory):
    """recall@10 of hnsw (over HTTP) and ivf against flat, histories of 50 clicks, on demo-medium (30,000
    items, MIND-small's shape), NRMS after 200 steps (after 2, its item vectors are still nearly alike and
    hnsw's recall at the default ef_search is under 0.9)."""
    run = _train(tmp_path_factory, "nrms-medium", "data=demo-medium", "model=nrms", steps=200)
    root = tmp_path_factory.mktemp("exports")
    exact = Service(_export(run, root / "flat"))
    ivf = Service(_export(run, root / "ivf", "--index", "ivf"))
    server = Server(_export(run, root / "hnsw", "--index", "hnsw"))
    rng = np.random.default_rng(1)
    recall: dict[str, list[float]] = {"hnsw": [], "ivf": []}
    for _ in range(100):
        history = [exact.catalogue.ids[i] for i in rng.integers(1, len(exact.catalogue), 50)]
        truth = {i for i, _ in exact.recommend(history, None, 10).items}
        recall["hnsw"].append(len(truth & set(_ids(server.recommend(history, k=10)))) / 10)
        recall["ivf"].append(len(truth & {i for i, _ in ivf.recommend(history, None, 10).items}) / 10)
    server.stop()
    assert np.mean(recall["hnsw"]) >= 0.95 and np.mean(recall["ivf"]) >= 0.95, recall


# ------------------------------------------------------------------------------------- on the service


def _assert_batch_is_each_alone(service: Service) -> None:
    """Requests answered together (as the app batches those that arrive while a batch runs) get the answers
    each gets alone: histories of different lengths, k and exclusions, a cold user, an unknown id."""
    histories = _histories(service.catalogue.ids, 6, seed=3)
    queries = [
        Query(h, None, k, exclude)
        for h, k, exclude in zip(histories, (10, 3, 10, 25, 10, 1), (True, False) * 3, strict=True)
    ]
    queries += [Query([], None, 5), Query([histories[0][0], "no-such-item"], None, 10)]
    answers = service.recommend_many(queries)
    for query, answer in zip(queries[:-1], answers, strict=False):
        alone = service.recommend(query.history, query.user, query.k, query.exclude_history)
        assert answer.source == alone.source and [i for i, _ in answer.items] == [i for i, _ in alone.items]
        np.testing.assert_allclose([s for _, s in answer.items], [s for _, s in alone.items], atol=1e-5)
    assert answers[-2].source == "popularity"
    assert isinstance(answers[-1], RequestError) and answers[-1].detail["unknown"] == ["no-such-item"]


def test_requests_answered_in_one_batch_are_answered_as_alone(naml_export: Path):
    _assert_batch_is_each_alone(Service(naml_export))


def test_two_stage_ranking_of_a_ctr_head(tmp_path_factory):
    run_dir = _train(tmp_path_factory, "dnn", "data=demo-tiny", "model=dnn")
    export = _export(run_dir, tmp_path_factory.mktemp("exports") / "dnn", "--index", "hnsw")
    run = load_run(run_dir)
    every = Service(export, candidates=0)
    two = Service(export, candidates=20)
    assert two.health()["ranking"] == "two_stage"
    for history in _histories(every.catalogue.ids, 10):
        expected = run.recommend(history=history, k=10)
        full = every.recommend(history, None, 10)
        assert [i for i, _ in full.items] == [i for i, _, _ in expected]  # --candidates 0: as recommend ranks
        head = dict(every.recommend(history, None, 300).items)
        answer = two.recommend(history, None, 10).items
        assert len(answer) == 10 and not {i for i, _ in answer} & set(history)
        scores = [s for _, s in answer]
        assert scores == sorted(scores, reverse=True)
        for item_id, score in answer:  # re-ranked by the head itself
            assert score == pytest.approx(head[item_id], abs=1e-5)
    _assert_batch_is_each_alone(two)
    _assert_batch_is_each_alone(every)

    # item-id embeddings: the export serves the stored vectors (no item encoder is built), adds no items
    run_dir = _train(tmp_path_factory, "dnn-id", "data=demo-tiny", "model=dnn", "model.item=id")
    ids_only = Service(_export(run_dir, tmp_path_factory.mktemp("exports") / "dnn-id"), candidates=0)
    assert ids_only.export.model.item_encoder is None
    history = _histories(ids_only.catalogue.ids, 1)[0]
    expected = [i for i, _, _ in load_run(run_dir).recommend(history=history, k=10)]
    assert [i for i, _ in ids_only.recommend(history, None, 10).items] == expected
    with pytest.raises(RequestError, match="model.item=id encodes no content") as refused:
        ids_only.add_items([{"id": "N-x", "title": "A title"}])
    assert refused.value.status == 409


@pytest.mark.integration
def test_a_user_the_model_knows_is_served_without_clicks(tmp_path_factory):
    """A GENRE profile, or LSTUR's trained user embedding: the model ranks for an empty history."""
    from oncerec.genre.merge import merge
    from oncerec.genre.options import RunOptions
    from oncerec.genre.runner import open_dataset, run_task
    from tests.fake_openai import FakeChatServer

    tmp = tmp_path_factory.mktemp("genre")
    tiny = open_dataset("demo-tiny", progress=False).root
    with FakeChatServer() as fake:
        opts = RunOptions(base_url=fake.url, model="m", store=str(tmp / "store.sqlite"), concurrency=16)
        run_task("profile", str(tiny), opts, **QUIET)
    merge(tiny, tmp / "store.sqlite", tmp / "merged", tasks=("profile",))
    run = _train(
        tmp_path_factory,
        "profiles",
        f"data.source={tmp / 'merged'}",
        "model=naml",
        "model.user_attributes=true",
    )
    service = Service(_export(run, tmp / "export"))
    has = (
        np.load(tmp / "merged" / "users" / f"{Dataset(tmp / 'merged').manifest['user_attributes'][0]}.npy")[
            :, 0
        ]
        > 0
    )
    users = Dataset(tmp / "merged").vocab("user")
    with_profile, without = users[int(np.flatnonzero(has)[0])], users[int(np.flatnonzero(~has)[1])]
    assert service.recommend([], with_profile, 5).source == "model"
    assert service.recommend([], without, 5).source == "popularity"

    run = _train(tmp_path_factory, "lstur", "data=demo-tiny", "model=lstur")
    service, trained = (
        Service(_export(run, tmp / "lstur")),
        np.load(tmp / "lstur" / "data" / "train_users.npy"),
    )
    users = load_run(run).dataset.vocab("user")
    seen, unseen = users[int(np.flatnonzero(trained)[0])], users[int(np.flatnonzero(~trained)[1])]
    answer = service.recommend([], seen, 5)
    assert answer.source == "model"
    assert [i for i, _ in answer.items] == [i for i, _, _ in load_run(run).recommend(seen, [], 5)]
    assert service.recommend([], unseen, 5).source == "popularity"  # index 0 of ~trained is the unknown user


def test_processes_sharing_an_export_see_each_others_items(naml_export: Path, tmp_path: Path):
    export = tmp_path / "export"
    shutil.copytree(naml_export, export)
    a, b = Service(export, persist=True), Service(export, persist=True)
    content = {"id": "N-shared", "title": "Shared between workers", "category": "news"}
    assert a.add_items([content])["added"] == 1
    assert b.recommend(["N-shared"], None, 3).source == "model"  # b applied a's folder before answering
    assert b.add_items([{**content, "title": "Changed by b"}]) == {"added": 0, "replaced": 1, "items": 299}
    assert a.recommend(["N-shared"], None, 3).items == b.recommend(["N-shared"], None, 3).items
    c = Service(export)  # a restart: both folders, in order
    assert c.recommend(["N-shared"], None, 3).items == a.recommend(["N-shared"], None, 3).items
    with pytest.raises(RequestError, match="does not add items") as refused:
        Service(export, adding="read-only here").add_items([content])
    assert refused.value.status == 409


@pytest.mark.integration
def test_two_workers_over_http_share_added_items_and_stop_together(naml_export: Path, tmp_path: Path):
    """`serve --workers 2`: two processes, each with a listening socket of its own on the port (the kernel
    spreads connections over them); an item added through one is in the other's answers; stopping `serve`
    stops both."""
    import psutil

    export = tmp_path / "export"
    shutil.copytree(naml_export, export)
    server = Server(export, "--workers", "2", "--persist")  # ready when both workers have answered
    children = psutil.Process(server.process.pid).children()  # the workers and multiprocessing's tracker
    content = {"id": "N-both", "title": "Seen by both workers", "category": "news"}
    assert httpx.post(f"{server.url}/items", json={"items": [content]}).json()["added"] == 1
    answered: set[int] = set()
    for _ in range(40):  # a new connection each time: both workers answer some
        assert httpx.post(f"{server.url}/recommend", json={"history": ["N-both"], "k": 3}).status_code == 200
        answered.add(httpx.get(f"{server.url}/health").json()["pid"])
    assert len(answered) == 2 and answered < {c.pid for c in children}
    server.stop()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [(c.pid, c.cmdline()) for c in alive]


def test_export_checks(naml_run: Path, naml_export: Path, tmp_path: Path, capsys):
    assert main(["export", str(naml_run), "--out", str(naml_export)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (
        main(["export", str(naml_run), "--out", str(tmp_path / "x"), "--index", "hnsw", "--nprobe", "3"]) == 2
    )
    assert "--nprobe is for the ivf index, not hnsw" in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 2
    assert "neither an export (export.json) nor a run directory" in capsys.readouterr().err
    assert main(["serve", str(naml_export), "--workers", "0"]) == 2
    assert "--workers 0" in capsys.readouterr().err
    # `serve RUN_DIR`: RUN_DIR/export, made on first use and reused, refused once the weights differ
    assert export_for(naml_run) == naml_run / "export"
    assert export_for(naml_run) == naml_run / "export"
    manifest = naml_run / "export" / "export.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"weights_sha256": "other"}))
    with pytest.raises(OncerecError, match="other weights"):
        export_for(naml_run)
    shutil.rmtree(naml_run / "export")
    with pytest.raises(OncerecError, match="not an export"):
        load_export(tmp_path)
    half = _export(naml_run, tmp_path / "half", "--dtype", "float16")
    assert np.load(half / "vectors.npy").dtype == np.float16
    full, rounded = Service(naml_export), Service(half)
    for history in _histories(full.catalogue.ids, 5):
        a, b = full.recommend(history, None, 10).items, rounded.recommend(history, None, 10).items
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], atol=1e-2)
    (half / "index.faiss").write_bytes(b"not an index")
    with pytest.raises(OncerecError, match="index.faiss: not a readable FAISS index"):
        load_export(half)


@pytest.mark.integration
def test_bench_serve_section(tmp_path: Path):
    """The `serve` section of the benchmarks at a tiny size (`python -m benchmarks --only serve` runs it at full
    size: demo-large), run through `run_bench` as the command runs it."""
    tiny = ServeSizes("tiny", 24, levels=(1, 8), servers=(("flat", 1), ("hnsw", 1)), added=30)
    sizes = Sizes("tiny", "tiny", 8, 0, 1, "tiny", 8, 100, 10, 10, serve=tiny)
    results = run_bench(out_dir=tmp_path, sizes=sizes, threads=1, only=("serve",))
    assert set(results) == {"mode", "sizes", "machine", "serve", "wall_s"}
    r = results["serve"]
    assert r["items"] == 298 and set(r["servers"]) == {"flat, 1 worker", "hnsw, 1 worker"}
    for s in r["servers"].values():
        assert set(s["levels"]) == {1, 8}
        for level in s["levels"].values():
            assert level["requests"] == 24 and 0 < level["p50_ms"] <= level["p99_ms"] <= level["max_ms"]
        assert s["add_s"] > 0
    assert (
        r["servers"]["hnsw, 1 worker"]["recall_at_k"] >= 0.95
        and "target_met" in r["servers"]["hnsw, 1 worker"]
    )
    rows = serve_rows(r)
    assert len(rows) == 2 * 2 + 1 + 2 and all(
        row.startswith("| serve ") and row.endswith(" |") for row in rows
    )
    assert "\n".join(rows) in (tmp_path / "bench.md").read_text()
