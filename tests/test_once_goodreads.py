"""ONCE's released Goodreads folder (`data.format=once-goodreads`), on a hand-written fixture in the release's
formats: ids and titles, the leave-last-out protocol split by split, no leakage, negatives the user never
read, determinism by seed, cold users, file:line errors, and prepare -> genre import -> genre merge -> train."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oncerec.cli import main
from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset
from oncerec.data.prepare import prepare
from oncerec.errors import ConfigError, DataError
from oncerec.genre.options import TaskOptions
from oncerec.genre.tasks import DatasetView, Generate, dataset_domain

BIDS = [str(89376 + 7 * k) for k in range(20)]  # Goodreads book ids; line k = book index k
UIDS = [f"{k:02d}" + "9d95d0956601ed05785c48fdada5f8"[:30] for k in range(7)]  # user id hashes
TITLES = {k: f"Book number {k}" for k in range(20)}
TITLES[3] = 'The Diamond Secret: A Retelling of "Anastasia"'  # CSV-quoted in book.csv, as in the release
TITLES[7] = ""  # a book without a title
HISTORIES = {  # uid -> book indices in reading order
    0: [3],  # one book: nothing to hold out, not in the dataset
    1: [0, 1],  # test only
    2: [2, 3, 4],  # valid + test
    3: [5, 0, 6, 7, 8],  # 2 training groups; cold (5 books)
    4: [9, 10, 11, 0, 1, 2, 12],  # 4 training groups; warm
    6: [13, 14, 15, 16],  # 1 training group; uid 5 has no line
}
NEG, EVAL_NEG = 3, 5


def _quote(title: str) -> str:
    return '"' + title.replace('"', '""') + '"' if '"' in title else title


def write_release(root: Path, histories: dict | None = None, **replace: list[str]) -> Path:
    """The release's files; `replace` (file stem with `_` for `.`: book_csv=[lines]) swaps a file's lines."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "tok.bid.dat": BIDS,
        "tok.uid.dat": UIDS,
        "book.csv": ["bid\ttitle", *(f"{b}\t{_quote(TITLES[k])}" for k, b in enumerate(BIDS))],
        "histories.jsonl": [
            json.dumps({"uid": u, "history": h})
            for u, h in (HISTORIES if histories is None else histories).items()
        ],
    }
    for name, lines in files.items():
        lines = replace.get(name.replace(".", "_"), lines)
        (root / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return root


def _cfg(*overrides: str):
    return build_config(
        ["data=once-goodreads", f"data.negatives={NEG}", f"data.eval_negatives={EVAL_NEG}", *overrides]
    ).data


def _prepare(raw: Path, out: Path, *overrides: str) -> Dataset:
    prepare(raw, _cfg(*overrides), out, progress=False)
    return Dataset(out)


def _groups(ds: Dataset, split: str) -> list[tuple[str, list[str], list[str], list[str]]]:
    """(user id, history book ids, positives, negatives) per group, in the split's order."""
    ids, users = ds.items_table.column("id").to_pylist(), ds.vocab("user")
    items, lengths, _ = (np.asarray(a) for a in ds.histories)
    s = ds.split(split)
    off, item, label = np.asarray(s.offsets), np.asarray(s.item), np.asarray(s.label)
    out = []
    for j in range(s.num_impressions):
        h = np.asarray(s.history)[j]
        cand, lab = item[off[j] : off[j + 1]], label[off[j] : off[j + 1]]
        out.append(
            (
                users[s.user[j]],
                [ids[i] for i in items[h, : lengths[h]]],
                [ids[i] for i in cand[lab == 1]],
                [ids[i] for i in cand[lab == 0]],
            )
        )
    return out


def _expected(split: str) -> list[tuple[str, list[str], list[str]]]:
    out = []
    for u, h in sorted(HISTORIES.items()):
        b = [BIDS[i] for i in h]
        n = len(b)
        if split == "train":
            out += [(UIDS[u], b[:t], [b[t]]) for t in range(1, n - 2)]
        elif split == "valid" and n >= 3:
            out.append((UIDS[u], b[: n - 2], [b[n - 2]]))
        elif split == "test" and n >= 2:
            out.append((UIDS[u], b[: n - 1], [b[n - 1]]))
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("once-goodreads")
    return _prepare(write_release(root / "release"), root / "ds")


def test_items_users_and_domain(prepared: Dataset):
    table = prepared.items_table
    assert table.column("id").to_pylist() == ["<pad>", *BIDS]  # every book, in tok.bid.dat order
    assert table.column("title").to_pylist()[1:] == [TITLES[k] for k in range(20)]
    assert set(table.column("abstract").to_pylist()) == {""}
    assert set(table.column("category").to_pylist()) == {""}
    assert set(prepared.vocab("user")[1:]) == {UIDS[u] for u, h in HISTORIES.items() if len(h) >= 2}
    assert prepared.manifest["domain"] == "books"
    assert dataset_domain(prepared, TaskOptions()) == "books"
    assert prepared.text_fields == ["title"]


def test_the_protocol_split_by_split_without_leakage(prepared: Dataset):
    read = {UIDS[u]: {BIDS[i] for i in h} for u, h in HISTORIES.items()}
    groups = {split: _groups(prepared, split) for split in ("train", "valid", "test")}
    for split, got in groups.items():
        assert [(u, h, p) for u, h, p, _ in got] == _expected(split), split
        for user, _, _, negatives in got:
            want = NEG if split == "train" else EVAL_NEG
            assert len(negatives) == want == len(set(negatives))
            assert not set(negatives) & read[user]  # never a book the user read
    held_out = {u: set(p) for split in ("valid", "test") for u, _, p, _ in groups[split]}
    test_book = {u: p[0] for u, _, p, _ in groups["test"]}
    for user, history, positives, _ in groups["train"]:
        assert not held_out.get(user, set()) & {*history, *positives}
    for user, history, _, _ in groups["valid"]:
        assert not held_out[user] & set(history)
    for user, history, _, _ in groups["test"]:
        assert test_book[user] not in history
    stats = json.loads((prepared.root / "stats.json").read_text())
    assert {s: v["impressions"] for s, v in stats["splits"].items()} == {"train": 7, "valid": 4, "test": 5}


def test_candidates_are_shuffled(prepared: Dataset):
    positions = []
    for split in ("train", "valid", "test"):
        s = prepared.split(split)
        label, off = np.asarray(s.label), np.asarray(s.offsets)
        positions += [int(np.flatnonzero(label[a:b] == 1)[0]) for a, b in zip(off[:-1], off[1:], strict=True)]
    assert len(set(positions)) > 1


def test_seeded(prepared: Dataset, tmp_path: Path):
    raw = write_release(tmp_path / "release")
    again = _prepare(raw, tmp_path / "a")
    other = _prepare(raw, tmp_path / "b", "data.split_seed=7")
    for split in ("train", "valid", "test"):
        a, b = prepared.split(split), again.split(split)
        for k in ("item", "label", "offsets", "history", "user"):
            assert np.array_equal(np.asarray(getattr(a, k)), np.asarray(getattr(b, k))), (split, k)
        # another seed: other negatives, the same positives and histories
        assert [g[:3] for g in _groups(other, split)] == [g[:3] for g in _groups(prepared, split)]
    assert [g[3] for g in _groups(other, "test")] != [g[3] for g in _groups(prepared, "test")]


def test_cold_users(prepared: Dataset):
    view = DatasetView(prepared)
    cold, _ = Generate(view, TaskOptions(cold_max=4), "books").cold_users()
    # a user with n books has a longest (test) history of n - 1: --cold-max 4 is ONCE's 1-5 books, minus one-book users
    assert {view.users[u] for u in cold} == {UIDS[u] for u, h in HISTORIES.items() if 2 <= len(h) <= 5}
    stats = json.loads((prepared.root / "stats.json").read_text())["once_goodreads"]
    assert stats["cold_users_in_release"] == 5 and stats["cold_users_in_dataset"] == 4
    assert stats["users_dropped_one_book"] == 1
    assert stats["users_by_books"] == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "7": 1}


BAD = [
    ("not JSON", {"histories_jsonl": ['{"uid": 1, "history": [0, 1]}', "{uid: 2}"]}, r"histories.jsonl:2: not valid JSON"),
    ("uid beyond", {"histories_jsonl": ['{"uid": 7, "history": [0, 1]}']}, r"histories.jsonl:1 \(field uid\): uid 7 is beyond tok.uid.dat"),
    ("uid twice", {"histories_jsonl": ['{"uid": 1, "history": [0, 1]}', '{"uid": 1, "history": [2, 3]}']}, r"histories.jsonl:2 \(field uid\): uid 1 appears twice \(first on line 1\)"),
    ("uid a string", {"histories_jsonl": ['{"uid": "1", "history": [0, 1]}']}, r"histories.jsonl:1 \(field uid\): expected an integer"),
    ("no history", {"histories_jsonl": ['{"uid": 1}']}, r"histories.jsonl:1 \(field history\): missing field"),
    ("book beyond", {"histories_jsonl": ['{"uid": 1, "history": [0, 1]}', '{"uid": 2, "history": [3, 20]}']}, r"histories.jsonl:2 \(field history\): book index 20 is beyond tok.bid.dat \(indices 0..19\)"),
    ("book twice", {"histories_jsonl": ['{"uid": 1, "history": [0, 1, 0]}']}, r"histories.jsonl:1 \(field history\): book index 0 appears twice"),
    ("book not an int", {"histories_jsonl": ['{"uid": 1, "history": [0, "1"]}']}, r"histories.jsonl:1 \(field history\): book index '1' is not an integer"),
    ("no title line", {"book_csv": ["bid\ttitle", *(f"{b}\tT" for b in BIDS[:-1])]}, rf"book.csv: book {BIDS[-1]} \(book index 19, line 20 of tok.bid.dat\) has no line"),
    ("unknown book", {"book_csv": ["bid\ttitle", *(f"{b}\tT" for b in BIDS), "12\tX"]}, r"book.csv:22 \(field bid\): book '12' is not in tok.bid.dat"),
    ("book listed twice", {"book_csv": ["bid\ttitle", f"{BIDS[0]}\tA", f"{BIDS[0]}\tB"]}, r"book.csv:3 \(field bid\): book \d+ appears twice \(first on line 2\)"),
    ("unbalanced quote", {"book_csv": ["bid\ttitle", f'{BIDS[0]}\t"An open quote', f"{BIDS[1]}\tB"]}, r"book.csv:3 \(field title\): the title runs over several lines"),
    ("three columns", {"book_csv": ["bid\ttitle", f"{BIDS[0]}\tA\tx"]}, r"book.csv:2: expected 2 tab-separated values"),
    ("comma header", {"book_csv": ["bid,title"]}, r"book.csv:1: expected the header `bid<TAB>title`"),
    ("vocabulary repeat", {"tok_bid_dat": [*BIDS, BIDS[2]]}, rf"tok.bid.dat:21: id {BIDS[2]} appears twice \(first on line 3\)"),
    ("empty vocabulary line", {"tok_uid_dat": [UIDS[0], "", *UIDS[1:]]}, r"tok.uid.dat:2: empty id"),
]  # fmt: skip


@pytest.mark.parametrize("replace,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_lines_name_file_line_and_field(tmp_path: Path, replace: dict, message: str):
    raw = write_release(tmp_path / "release", **replace)
    with pytest.raises(DataError, match=message):
        _prepare(raw, tmp_path / "ds")
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.tmp-*"))  # nothing half-written


def test_missing_file_and_no_negatives(tmp_path: Path):
    raw = write_release(tmp_path / "release")
    (raw / "tok.uid.dat").unlink()
    with pytest.raises(DataError, match=r"tok.uid.dat: missing file \(ONCE's Goodreads release folder holds"):
        _prepare(raw, tmp_path / "ds")
    with pytest.raises(ConfigError, match=r"data.negatives=0: .*data=once-goodreads"):
        prepare(
            write_release(tmp_path / "r2"),
            build_config(["data.format=once-goodreads"]).data,
            tmp_path / "ds",
            progress=False,
        )


def test_prepare_import_merge_and_train(tmp_path: Path, capsys):
    from oncerec.training.pipeline import train

    raw = write_release(tmp_path / "release")
    out = tmp_path / "ds"
    # the command starts from the data preset: 4 and 49 negatives (capped by the unread books of this catalogue)
    assert main(["prepare", str(raw), "--format", "once-goodreads", "--out", str(out), "--quiet"]) == 0
    assert (
        "cold users (1-5 books): 4 of 5 in the dataset (genre generate --cold-max 4)"
        in capsys.readouterr().out
    )
    ds = Dataset(out)
    assert (ds.manifest["data_config"]["negatives"], ds.manifest["data_config"]["eval_negatives"]) == (4, 49)

    summaries = raw / "book_summarizer.log"
    summaries.write_text(
        f"{BIDS[0]}\t[description] Book number 0 is a book.\n"  # the release's placeholder, asked again below
        f"{BIDS[1]}\t[description] A family saga across three generations of lighthouse keepers.\n"
        f"{BIDS[0]}\t[description] A quiet novel about a gardener who finds a map under her roses.\n"
        f"{BIDS[5]}\t[description] A detective story set in a snowed-in mountain hotel.\n"
        "999\t[description] A book this dataset does not have.\n"
        f"{BIDS[6]}\t[description] Book number 6 is a book.\n"
    )
    profiles = raw / "user_profiler.log"
    profiles.write_text(
        json.dumps({"uid": 3, "interest": ["mystery", "gardens"]})
        + "\n"
        + json.dumps({"uid": 0, "interest": ["poetry"]})  # the one-book user: not in the dataset
        + "\n"
    )
    generated = raw / "generator_v1.log"
    book = {"title": "The Kite Runner", "description": "A story of friendship and redemption in Kabul."}
    generated.write_text(json.dumps({"uid": 2, "book": json.dumps(book, indent=4)}) + "\n")
    store = tmp_path / "store.sqlite"
    for task, log, vocab in (
        ("summarize", summaries, []),
        ("profile", profiles, ["--vocab", str(raw / "tok.uid.dat")]),
        ("generate", generated, ["--vocab", str(raw / "tok.uid.dat")]),
    ):
        args = ["genre", "import", "--data", str(out), "--format", "once", "--task", task, "--log", str(log)]
        assert main([*args, "--store", str(store), *vocab]) == 0, task
    text = capsys.readouterr().out
    assert "6 lines read: 3 imported, 1 invalid, 1 ids not in the dataset, 1 duplicates" in text
    assert "2 lines read: 1 imported, 0 invalid, 1 ids not in the dataset" in text
    merged = tmp_path / "merged"
    assert main(["genre", "merge", "--data", str(out), "--store", str(store), "--out", str(merged)]) == 0
    m = Dataset(merged)
    assert m.manifest["domain"] == "books" and "summary" in m.text_fields
    ids = m.items_table.column("id").to_pylist()
    summary = dict(zip(ids, m.items_table.column("summary").to_pylist(), strict=True))
    assert summary[BIDS[0]].startswith("A quiet novel") and summary[BIDS[2]] == TITLES[2]  # fallback: title
    report = m.manifest["genre"]
    assert report["summarize"]["generated"] == 3 and report["summarize"]["failed_targets"] == {"invalid": 1}
    assert report["profile"]["with_profile"] == 1
    assert report["generate"]["items"] == 1

    cfg = build_config(
        [
            f"data={merged}",
            "model=dnn",
            "model.predictor=dot",
            "model.item_fields=[title,summary]",
            "model.hidden_size=16",
            "embed.dim=16",
            "exp=quick",
            "exp.batch_size=4",
            f"exp.out_dir={tmp_path / 'run'}",
        ]
    )
    _, metrics = train(cfg, progress=False)
    assert metrics["test"]["impressions"] == 5 and 0 <= metrics["test"]["auc"] <= 1
