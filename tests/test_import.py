"""`oncerec genre import`: ONCE's released log formats (news and books) and JSON lines into the response store,
on small fixtures written here: the release's quirks, the live validation, invalid / duplicate accounting,
malformed lines, idempotent re-import, and a merged dataset identical to one from the same answers asked live.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from oncerec.cli import main
from oncerec.config.loader import build_config
from oncerec.errors import DataError, OncerecError
from oncerec.genre.importer import ImportOptions, import_answers, profile_object, reason_kind, unfence
from oncerec.genre.merge import merge
from oncerec.genre.options import RunOptions
from oncerec.genre.runner import open_dataset, run_task
from oncerec.genre.store import Store
from oncerec.genre.tasks import DatasetView
from tests.fake_openai import FakeChatServer, default_reply


@pytest.fixture(scope="module")
def news() -> DatasetView:
    return DatasetView(open_dataset("demo-tiny", progress=False))


@pytest.fixture(scope="module")
def books() -> DatasetView:
    from oncerec.data.dataset import Dataset, resolve_dataset

    cfg = build_config(["data=demo-goodreads", "data.demo_scale=tiny", "data.user_min_positives=5"]).data
    return DatasetView(Dataset(resolve_dataset(cfg, progress=False)))


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _json_lines(path: Path, objects: list[dict]) -> Path:
    return _write(path, [json.dumps(o) for o in objects])


def _import(view: DatasetView, tmp: Path, task: str, log: Path, **kw):
    kw.setdefault("store", str(tmp / "store.sqlite"))
    opts = ImportOptions(task=task, log=str(log), **kw)
    return import_answers(str(view.dataset.root), opts, progress=False)


def _records(store: Path, task: str | None = None) -> dict:
    return {r.target: r for r in Store(store, readonly=True).records(task)}


def _vocab(tmp: Path, view: DatasetView) -> tuple[Path, list[str]]:
    """A user vocabulary in another order than the dataset's: uid i is line i."""
    users = list(reversed(view.users[1:]))
    return _write(tmp / "tok.uid.dat", users), users


def test_helpers_of_the_release_formats():
    assert unfence('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert unfence("```\n[topics]\n- health\n```") == "[topics]\n- health"
    assert unfence("no fence") == "no fence"
    assert profile_object("[topics]\n- health\n- travel\n[region]\n- New York") == {
        "topics": ["health", "travel"],
        "regions": ["New York"],
    }
    assert profile_object("[topics] finance\n[regions]") == {"topics": ["finance"], "regions": []}
    assert reason_kind("topic `cooking` is not one of the allowed values: health, travel") == (
        "topic `…` is not one of the allowed values"
    )
    assert reason_kind('"title" must have 1 to 30 words, it has 0') == '"title" must have 1 to 30 words'


# ------------------------------------------------------------------------------------------- news (MIND)


def test_news_summarizer_log_with_the_release_quirks(news: DatasetView, tmp_path: Path):
    a, b, c, d, e = news.ids[1:6]
    log = _write(
        tmp_path / "news_summarizer.log",
        [
            f"{a}\t[newtitle] First try",
            f"{b}\t[newtitle] Fed holds rates steady",
            f"{a}\t[newtitle] Lakers beat Celtics in overtime",  # asked again: the later line wins
            f"{c}\tNo tag at all here",  # a missing tag is tolerated
            f"{d}\t```\n".rstrip("\n") + "[newtitle] Inside a fence```",  # a code fence too
            f"{e}\t[newtitle] ",  # an empty title: invalid, kept
            "N999999\t[newtitle] Not an item of the dataset",
        ],
    )
    s = _import(news, tmp_path, "summarize", log)
    assert (s.lines, s.imported, s.invalid_total, s.not_in_dataset, s.duplicates) == (7, 4, 1, 1, 1)
    assert s.invalid == {'"title" must have 1 to 30 words': 1}
    assert s.lines == s.imported + s.invalid_total + s.not_in_dataset + s.duplicates
    assert (s.model, s.prompt_version, s.written, s.unchanged) == (
        "import:gpt-3.5-turbo",
        "once-release:news_summarizer",
        5,
        0,
    )
    records = _records(tmp_path / "store.sqlite")
    assert records[a].output == {"title": "Lakers beat Celtics in overtime"}
    assert records[c].output == {"title": "No tag at all here"}
    assert records[d].output == {"title": "Inside a fence"}
    bad = records[e]
    assert bad.status == "invalid" and bad.raw == f"{e}\t[newtitle] " and "1 to 30 words" in bad.error
    assert json.loads(records[a].params) == {"import": "once", "file": "news_summarizer.log", "line": 3}
    assert "N999999" not in records


def test_news_profiles_from_the_raw_profiler_text(news: DatasetView, tmp_path: Path):
    vocab, users = _vocab(tmp_path, news)
    log = _json_lines(
        tmp_path / "user_profiler.log",
        [
            {"uid": 0, "interest": "[topics]\n- Health\n- travel\n[region]\n- New York\n- Ohio"},
            {"uid": 1, "interest": "```\n[topics]\n- finance\n```"},  # fenced, no region section
            {"uid": 2, "interest": "[topics]\n- cooking"},  # not one of the 19 topics
            {"uid": 3, "interest": "I cannot tell."},  # no sections
            {"uid": users.index(users[0]), "interest": "[topics]\n- economy"},  # uid 0 again: later wins
        ],
    )
    s = _import(news, tmp_path, "profile", log, vocab=str(vocab))
    assert (s.lines, s.imported, s.invalid_total, s.duplicates) == (5, 2, 2, 1)
    assert s.invalid == {
        "topic `…` is not one of the allowed values": 1,
        "the profile must start with a [topics] section": 1,
    }
    records = _records(tmp_path / "store.sqlite")
    assert records[users[0]].output == {"topics": ["economy"], "regions": []}
    assert records[users[1]].output == {"topics": ["finance"], "regions": []}
    assert records[users[2]].status == "invalid" and records[users[2]].raw.startswith('{"uid": 2')


def test_news_generator_and_chain_logs(news: DatasetView, tmp_path: Path):
    vocab, users = _vocab(tmp_path, news)
    category = news.categories[0]
    item = {"title": "More rain ahead", "abstract": "A wet week.", "category": category.upper()}
    lines = [
        {"uid": 0, "news": json.dumps(item, indent=4)},
        {"uid": 1, "news": "```json\n" + json.dumps(item) + "\n```"},
        {"uid": 2, "news": json.dumps({**item, "category": "astrology"})},
        {"uid": 3, "news": '{"title": "Unclosed'},
    ]
    for name in ("generator_v1.log", "chain_v5.log"):
        s = _import(news, tmp_path, "generate", _json_lines(tmp_path / name, lines), vocab=str(vocab))
        assert (s.imported, s.invalid_total, s.prompt_version) == (2, 2, f"once-release:{Path(name).stem}")
        assert s.invalid == {
            "category `…` is not one of the allowed values": 1,
            "the JSON object is not closed (missing `…`)": 1,
        }
    records = list(Store(tmp_path / "store.sqlite", readonly=True).records("generate"))
    assert len(records) == 8  # two files, two prompt versions: two rows per user
    done = {r.target: r.output for r in records if r.status == "done"}
    assert done[f"{users[0]}#0"] == {
        "title": "More rain ahead",
        "abstract": "A wet week.",
        "category": category,
    }
    assert set(done) == {f"{users[0]}#0", f"{users[1]}#0"}


def test_domain_mismatch_and_integer_ids_without_a_vocabulary_are_errors(news: DatasetView, tmp_path: Path):
    log = _write(tmp_path / "book_summarizer.log", [f"{news.ids[1]}\t[description] A book."])
    with pytest.raises(
        OncerecError, match=r"book_summarizer.log:1: \[description\] answers are books .*--domain books"
    ):
        _import(news, tmp_path, "summarize", log)
    log = _json_lines(tmp_path / "user_profiler.log", [{"uid": 0, "interest": ["fantasy"]}])
    with pytest.raises(OncerecError, match="Goodreads profiler's format"):
        _import(news, tmp_path, "profile", log, vocab=str(_vocab(tmp_path, news)[0]))
    with pytest.raises(
        DataError, match=r"user_profiler.log:1 \(field uid\): uid 0 is a line number .*--vocab"
    ):
        _import(news, tmp_path, "profile", log)
    assert not (tmp_path / "store.sqlite").exists()  # nothing was stored


# ------------------------------------------------------------------------------------------- books (Goodreads)


def test_goodreads_release_formats(books: DatasetView, tmp_path: Path):
    a, b, c = books.ids[1:4]
    log = _write(
        tmp_path / "book_summarizer.log",
        [
            f"{a}\t[description] {books.columns['title'][1]} is a book.",  # placeholder, asked again below
            f"{b}\t[description] A gripping tale of a family across three generations.",
            f"{a}\t[description] A quiet novel about a lighthouse keeper and his daughter.",
            f"{c}\t[description] {books.columns['title'][3]} is a book.",  # the last word: a placeholder
        ],
    )
    s = _import(books, tmp_path, "summarize", log)
    assert (s.lines, s.imported, s.invalid_total, s.duplicates) == (4, 2, 1, 1)
    assert list(s.invalid) == ["placeholder answer (`…`: the release's stand-in for a missing description)"]
    records = _records(tmp_path / "store.sqlite", "summarize")
    assert records[a].output == {"description": "A quiet novel about a lighthouse keeper and his daughter."}
    assert records[c].status == "invalid" and records[c].raw.endswith("is a book.")

    vocab, users = _vocab(tmp_path, books)
    log = _json_lines(
        tmp_path / "user_profiler.log",
        [
            {"uid": 0, "interest": ["Fantasy", "dragons", "magic"]},
            {"uid": 1, "interest": ["books about the sea", "mystery"]},  # over 3 words: invalid, as live
            {"uid": 2, "interest": []},
            {"uid": 3, "interest": ["foul play", "Mystery"]},  # ONCE's short phrases are valid
        ],
    )
    s = _import(books, tmp_path, "profile", log, vocab=str(vocab))
    assert (s.imported, s.invalid_total) == (2, 2)
    assert s.invalid == {
        "interest `…` has more than 3 words: name it shorter": 1,
        '"interests" must hold 1 to 5 distinct entries': 1,
    }
    profiles = _records(tmp_path / "store.sqlite", "profile")
    assert profiles[users[0]].output == {"interests": ["fantasy", "dragons", "magic"]}
    assert profiles[users[3]].output == {"interests": ["foul play", "mystery"]}

    book = {"title": "The Kite Runner", "description": "A story of friendship and redemption."}
    log = _json_lines(
        tmp_path / "generator_v2.log",
        [
            {"uid": 0, "book": json.dumps(book, indent=4)},  # ONCE's generator gave no shelf
            {"uid": 1, "book": json.dumps({**book, "author": "K. Hosseini"})},
        ],
    )
    s = _import(books, tmp_path, "generate", log, vocab=str(vocab))
    assert (s.imported, s.invalid_total) == (1, 1)
    generated = _records(tmp_path / "store.sqlite", "generate")
    assert generated[f"{users[0]}#0"].output == {"title": book["title"], "abstract": book["description"]}
    assert 'unexpected "author"' in generated[f"{users[1]}#0"].error
    report = merge(books.dataset.root, tmp_path / "store.sqlite", tmp_path / "merged")
    assert report["generate"]["items"] == 1 and report["profile"]["with_profile"] == 2
    assert report["summarize"]["generated"] == 2 and report["summarize"]["failed_targets"] == {"invalid": 1}


def test_a_summarizer_log_of_vocabulary_ids_read_through_the_vocabulary_is_refused(
    books: DatasetView, tmp_path: Path
):
    numbers = ["89376", "89377", "45967", "0", "2"]  # Goodreads book ids, as in the release's tok.bid.dat
    log = _write(tmp_path / "book_summarizer.log", [f"{i}\t[description] A fine novel." for i in numbers])
    with pytest.raises(
        OncerecError, match="already ids of --vocab .*e.g. `89376` on line 1.*without --vocab"
    ):
        _import(books, tmp_path, "summarize", log, vocab=str(_write(tmp_path / "numbers.dat", numbers)))
    bids = _write(tmp_path / "tok.bid.dat", books.ids[1:])
    by_index = _write(tmp_path / "by_index.log", ["0\t[description] A fine novel.", "2\tA long saga."])
    s = _import(books, tmp_path, "summarize", by_index, vocab=str(bids))
    assert s.imported == 2 and set(_records(tmp_path / "store.sqlite")) == {books.ids[1], books.ids[3]}


# ------------------------------------------------------------------------------------------- jsonl, bad lines


def test_jsonl_outputs_made_elsewhere(news: DatasetView, tmp_path: Path):
    user, item = news.users[1], news.ids[1]
    log = _json_lines(
        tmp_path / "batch.jsonl",
        [
            {
                "id": user,
                "task": "generate",
                "output": {"title": "A", "abstract": "B", "category": news.categories[1]},
            },
            {
                "id": f"{user}#1",
                "task": "generate",
                "output": '```json\n{"title": "C", "abstract": "D", "category": "'
                + news.categories[1]
                + '"}\n```',
            },
        ],
    )
    s = _import(news, tmp_path, "generate", log, fmt="jsonl", model="gpt-4o-mini")
    assert (s.imported, s.model, s.prompt_version) == (2, "import:gpt-4o-mini", "import:batch")
    assert set(_records(tmp_path / "store.sqlite")) == {f"{user}#0", f"{user}#1"}
    bad = _json_lines(tmp_path / "mixed.jsonl", [{"id": item, "task": "profile", "output": {}}])
    with pytest.raises(
        DataError, match=r"mixed.jsonl:1 \(field task\): task `profile`, but --task is summarize"
    ):
        _import(news, tmp_path, "summarize", bad, fmt="jsonl")


def test_malformed_lines_stop_the_import_unless_skip_bad(news: DatasetView, tmp_path: Path):
    vocab, users = _vocab(tmp_path, news)
    lines = [
        json.dumps({"uid": 0, "interest": "[topics]\n- health"}),
        '{"uid": 1, "interest": "[topics]',  # bad JSON
        json.dumps({"uid": 2}),  # a missing key
        json.dumps({"uid": 10**6, "interest": "[topics]\n- health"}),  # beyond the vocabulary
        json.dumps({"uid": 3, "interest": "[topics]\n- food"}),
    ]
    log = _write(tmp_path / "user_profiler.log", lines)
    with pytest.raises(DataError, match=r"user_profiler.log:2: not valid JSON"):
        _import(news, tmp_path, "profile", log, vocab=str(vocab))
    assert not (tmp_path / "store.sqlite").exists()  # an import stores all of its answers or none
    with pytest.raises(DataError, match=r"p2.log:2 \(field interest\): missing key"):
        _import(
            news, tmp_path, "profile", _write(tmp_path / "p2.log", [lines[0], lines[2]]), vocab=str(vocab)
        )
    with pytest.raises(DataError, match=rf"p3.log:1 \(field uid\): 1000000 is beyond the {len(users)} lines"):
        _import(news, tmp_path, "profile", _write(tmp_path / "p3.log", [lines[3]]), vocab=str(vocab))
    s = _import(news, tmp_path, "profile", log, vocab=str(vocab), skip_bad=True)
    assert (s.lines, s.imported, s.invalid_total) == (5, 2, 3)
    assert sum(n for k, n in s.invalid.items() if k.startswith("malformed line")) == 3
    records = _records(tmp_path / "store.sqlite")
    assert (
        records["user_profiler.log:2"].status == "invalid"
        and "not valid JSON" in records["user_profiler.log:2"].error
    )
    assert (
        records[users[2]].error == "malformed line: missing key"
    )  # the id could be read: the row is the user's


def test_reimporting_adds_nothing_and_later_live_answers_win(news: DatasetView, tmp_path: Path, capsys):
    item = news.ids[1]
    log = _write(
        tmp_path / "news_summarizer.log",
        [f"{item}\t[newtitle] Imported title", f"{news.ids[2]}\t[newtitle] "],
    )
    store = tmp_path / "store.sqlite"
    args = [
        *("genre", "import", "--data", str(news.dataset.root), "--task", "summarize", "--log", str(log)),
        *("--store", str(store), "--quiet"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 lines read: 1 imported, 1 invalid, 0 ids not in the dataset, 0 duplicates" in out
    assert 'invalid: 1 "title" must have 1 to 30 words' in out and "2 rows written, 0 already there" in out
    before = [(r.key, r.created_at) for r in Store(store, readonly=True).records()]
    assert main(args) == 0
    assert "0 rows written, 2 already there unchanged" in capsys.readouterr().out
    assert [(r.key, r.created_at) for r in Store(store, readonly=True).records()] == before
    # a live answer stored after the import is the one merge takes (the latest per target)
    with FakeChatServer() as server:
        opts = RunOptions(base_url=server.url, model="m", store=str(store), limit=1)
        run_task("summarize", str(news.dataset.root), opts, progress=False)
    done, _ = Store(store, readonly=True).latest("summarize")
    assert done[item].model == "openai:m"
    assert Store(store, readonly=True).latest("summarize", "gpt-3.5-turbo")[0][item].output == {
        "title": "Imported title"
    }
    assert main([*args[:-1], "--format", "jsonl"]) == 2
    assert "news_summarizer.log:1: not valid JSON" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- merge: import = live


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in ("dataset.json", "stats.json"):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    for name in ("dataset.json", "stats.json"):
        meta = json.loads((root / name).read_text())
        meta["genre"].pop("store")
        meta["genre"].pop("model")  # `any`, or the model merge was given
        out[name] = json.dumps(meta, sort_keys=True)
    return out


def test_a_merge_of_imported_answers_equals_the_merge_of_the_same_answers_asked_live(
    news: DatasetView, tmp_path: Path
):
    root = news.dataset.root
    first_item = news.ids[1]

    def reply(messages):
        if f"Title: {news.columns['title'][1]}\n" in messages[1]["content"] + "\n":
            return "no idea"  # one unusable answer: both merges fall back to the title
        return default_reply(messages)

    live = tmp_path / "live.sqlite"
    with FakeChatServer(reply=reply) as server:
        opts = RunOptions(
            base_url=server.url, model="gpt-3.5-turbo", store=str(live), concurrency=8, parse_retries=0
        )
        for task in ("summarize", "profile", "generate"):
            run_task(task, str(root), opts, progress=False)
    stored = _records(live)
    assert stored[first_item].status == "invalid"

    # the same answers, written in ONCE's release formats
    vocab, users = _vocab(tmp_path, news)
    uid = {u: i for i, u in enumerate(users)}
    summaries = [
        f"{t}\t[newtitle] {r.output['title'] if r.output else ''}"
        for t, r in _records(live, "summarize").items()
    ]
    profiles = [
        {
            "uid": uid[t],
            "interest": "[topics]\n"
            + "".join(f"- {x}\n" for x in r.output["topics"])
            + "[region]\n"
            + "".join(f"- {x}\n" for x in r.output["regions"]),
        }
        for t, r in _records(live, "profile").items()
    ]
    generated = [
        {"uid": uid[t.split("#")[0]], "news": json.dumps(r.output)}
        for t, r in _records(live, "generate").items()
    ]
    imported = tmp_path / "imported.sqlite"
    for task, log in [
        ("summarize", _write(tmp_path / "news_summarizer.log", summaries)),
        ("profile", _json_lines(tmp_path / "user_profiler.log", profiles)),
        ("generate", _json_lines(tmp_path / "generator_v1.log", generated)),
    ]:
        s = _import(news, tmp_path, task, log, vocab=str(vocab), store=str(imported))
        assert s.imported + s.invalid_total == s.lines and s.invalid_total == (task == "summarize")

    a = merge(root, live, tmp_path / "from-live")
    b = merge(root, imported, tmp_path / "from-import", model="gpt-3.5-turbo")
    assert a["summarize"]["fallback"] == 1 and a["generate"]["items"] > 0 and a["profile"]["with_profile"] > 0
    assert (a.pop("model"), b.pop("model")) == ("any", "gpt-3.5-turbo")
    assert {k: v for k, v in a.items() if k != "store"} == {k: v for k, v in b.items() if k != "store"}
    assert _tree(tmp_path / "from-live") == _tree(tmp_path / "from-import")
    # --model picks the imported answers by their model; another model's finds none
    other = merge(root, imported, tmp_path / "other", model="m", tasks=("summarize",))
    assert other["summarize"]["generated"] == 0
