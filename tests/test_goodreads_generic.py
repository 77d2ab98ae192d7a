"""Goodreads and generic-format readers, the ONCE user-level protocol, and training on such data."""

from __future__ import annotations

import csv
import gzip
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset
from oncerec.data.formats.goodreads import BOOKS, INTERACTIONS
from oncerec.data.prepare import prepare
from oncerec.errors import DataError
from oncerec.eval.metrics import evaluate_groups
from oncerec.training.pipeline import train

# protocol knobs small enough for hand-written data
LOOSE = [
    "data.item_min_interactions=2",
    "data.user_min_positives=3",
    "data.cold_user_share=0",
    "data.warm_history=[2,2]",
    "data.split_ratios=[0.5,0.25,0.25]",
]


def _stamp(day: int) -> str:
    return time.strftime("%a %b %d %H:%M:%S +0000 %Y", time.gmtime(1_500_000_000 + day * 86_400))


def _write_goodreads(root: Path, interactions: list, books: list | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    books = books or [
        {"book_id": b, "title": f"Book {b}", "description": f"About {b}", "authors": [{"author_id": f"A{b}"}],
         "popular_shelves": [{"count": "90", "name": "to-read"}, {"count": "9", "name": f"shelf{b}"}]}
        for b in "abcdefg"
    ]  # fmt: skip
    with gzip.open(root / BOOKS, "wt") as f:
        f.writelines((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in books)
    with gzip.open(root / INTERACTIONS, "wt") as f:
        for x in interactions:
            if isinstance(x, str):
                f.write(x + "\n")
            else:
                user, book, rating, day = x
                f.write(
                    json.dumps(
                        {"user_id": user, "book_id": book, "rating": rating, "date_added": _stamp(day)}
                    )
                    + "\n"
                )
    return root


# u1: five positives a b c d e (days 1..5) and a negative f (day 6); u2: positives a b c d, a 3 and a 0
# (dropped), negative f; u3: only two positives (dropped by user_min_positives=3); g: one interaction (dropped)
INTERACTIONS_U = [
    ("u1", "a", 5, 1), ("u1", "b", 4, 2), ("u1", "c", 5, 3), ("u1", "d", 4, 4), ("u1", "e", 5, 5), ("u1", "f", 1, 6),
    ("u2", "b", 5, 1), ("u2", "a", 4, 2), ("u2", "c", 3, 3), ("u2", "d", 5, 4), ("u2", "e", 0, 5), ("u2", "c", 4, 6),
    ("u2", "f", 2, 7), ("u2", "e", 5, 8),
    ("u3", "a", 5, 1), ("u3", "g", 5, 2),
]  # fmt: skip


def _prepare(raw: Path, out: Path, fmt: str, *overrides: str) -> Dataset:
    cfg = build_config([f"data.format={fmt}", f"data.source={raw}", "data.name=t", *LOOSE, *overrides]).data
    prepare(raw, cfg, out, progress=False)
    return Dataset(out)


def _groups(ds: Dataset, split: str) -> dict[str, tuple[list[str], list[str], list[int]]]:
    """user -> (history ids, candidate ids, labels) of a split (one impression per user); candidates sorted by
    id (prepare shuffles them, see test_candidates_are_shuffled_within_groups)."""
    ids = ds.items_table.column("id").to_pylist()
    users = ds.vocab("user")
    s = ds.split(split)
    hist, lengths, _ = ds.histories
    out = {}
    for j in range(s.num_impressions):
        rows = slice(s.offsets[j], s.offsets[j + 1])
        h = s.history[j]
        pairs = sorted((ids[i], int(y)) for i, y in zip(s.item[rows], s.label[rows], strict=True))
        out[users[s.user[j]]] = (
            [ids[i] for i in hist[h, : lengths[h]]],
            [i for i, _ in pairs],
            [y for _, y in pairs],
        )
    return out


def test_goodreads_protocol_on_hand_written_lines(tmp_path: Path):
    ds = _prepare(_write_goodreads(tmp_path / "gr", INTERACTIONS_U), tmp_path / "ds", "goodreads")
    assert ds.split_names == ["train", "valid", "test"]
    # ratings > 3 positive, 1-2 negative, 3 and 0 dropped; u3 (2 positives) and book g (1 interaction) filtered
    assert sorted(ds.vocab("user")[1:]) == ["u1", "u2"]
    assert "g" not in ds.items_table.column("id").to_pylist()
    train, valid, test = (_groups(ds, s) for s in ("train", "valid", "test"))
    # history: the first 2 positives by time; the rest split 50/25/25 by time, per user
    assert train["u1"] == (["a", "b"], ["c", "d"], [1, 1])
    assert valid["u1"] == (["a", "b"], ["e"], [1]) and test["u1"] == (["a", "b"], ["f"], [0])
    assert train["u2"] == (["b", "a"], ["c", "d"], [1, 1])
    assert valid["u2"] == (["b", "a"], ["f"], [0]) and test["u2"] == (["b", "a"], ["e"], [1])
    items = ds.items_table.to_pylist()
    book = next(r for r in items if r["id"] == "a")
    # title, description as the abstract field, author as category, top descriptive shelf as subcategory
    assert (book["title"], book["abstract"], book["category"], book["subcategory"]) == (
        "Book a",
        "About a",
        "Aa",
        "shelfa",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"user_id": "u1", "book_id": "a", "rating": 5', r"interactions_dedup.json.gz:2: not valid JSON"),
        (
            '{"user_id": "u1", "book_id": "a", "rating": "5", "date_added": "x"}',
            r":2 \(field rating\): expected int",
        ),
        (
            '{"user_id": "u1", "book_id": "a", "rating": 5, "date_added": "yesterday"}',
            r":2 \(field date_added\): bad time",
        ),
        ('{"user_id": "u1", "rating": 5, "date_added": "x"}', r":2 \(field book_id\): missing field"),
    ],
)
def test_goodreads_bad_lines_name_file_line_and_field(tmp_path: Path, line: str, message: str):
    raw = _write_goodreads(tmp_path / "gr", [INTERACTIONS_U[0], line])
    with pytest.raises(DataError, match=message):
        _prepare(raw, tmp_path / "ds", "goodreads")
    assert not (tmp_path / "ds").exists()  # nothing half-written


ITEMS = [
    {"movie_id": m, "name": f"Movie {m}", "plot": f"A film about {m}", "genre": g}
    for m, g in zip("abcdefghij", "xxyyzzxyzx", strict=True)
]


def _interactions_rows() -> list[dict]:
    rows = []
    for user, book, rating, day in INTERACTIONS_U:
        if rating in (0, 3):
            continue
        rows.append({"uid": user, "movie_id": book, "liked": int(rating > 3), "ts": day})
    return rows


def _write_generic(root: Path, ext: str, interactions: list[dict] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in (("items", ITEMS), ("interactions", interactions or _interactions_rows())):
        if ext == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), root / f"{name}.parquet")
        else:
            with open(root / f"{name}.{ext}", "w", newline="") as f:
                w = csv.DictWriter(f, list(rows[0]), delimiter="\t" if ext == "tsv" else ",")
                w.writeheader()
                w.writerows(rows)
    return root


COLUMNS = [
    "data.columns={id: movie_id, title: name, abstract: plot, category: genre, user: uid, item: movie_id, "
    "label: liked, time: ts}"
]


def test_generic_csv_and_parquet_give_the_same_dataset_as_goodreads(tmp_path: Path):
    from_csv = _prepare(_write_generic(tmp_path / "csv", "csv"), tmp_path / "a", "generic", *COLUMNS)
    from_parquet = _prepare(_write_generic(tmp_path / "pq", "parquet"), tmp_path / "b", "generic", *COLUMNS)
    goodreads = _prepare(_write_goodreads(tmp_path / "gr", INTERACTIONS_U), tmp_path / "c", "goodreads")
    for split in ("train", "valid", "test"):
        assert _groups(from_csv, split) == _groups(from_parquet, split) == _groups(goodreads, split)
    row = next(r for r in from_csv.items_table.to_pylist() if r["id"] == "c")
    assert (row["title"], row["abstract"], row["category"]) == ("Movie c", "A film about c", "y")


def test_generic_groups_and_sampled_negatives(tmp_path: Path):
    rows = [
        {"user": u, "item": i, "group": f"{u}-{k}", "time": k}
        for u in ("u1", "u2")
        for k, i in enumerate("abcdef")
    ]  # implicit feedback: no label column, every row a positive; every interaction its own group
    ds = _prepare(
        _write_generic(tmp_path / "g", "tsv", rows),
        tmp_path / "ds",
        "generic",
        "data.columns={id: movie_id, title: name}",
        "data.negatives=2",
        "data.item_min_interactions=1",
    )
    s = ds.split("train")
    # after the 2-item history (a, b): groups c, d in train, e in valid, f in test, each + 2 sampled negatives
    assert s.num_impressions == 4 and np.diff(np.asarray(s.offsets)).tolist() == [3, 3, 3, 3]
    assert (np.asarray(s.label) == 0).sum() == 8
    valid = _groups(ds, "valid")
    for history, items, lab in valid.values():
        negatives = [i for i, y in zip(items, lab, strict=True) if y == 0]
        assert len(negatives) == 2 and not set(negatives) & set(history)
    # Sampled negatives are appended after the positive; prepare shuffles each group (seeded), so a constant
    # score, whose ties break by position, no longer puts every positive first (it gave AUC = MRR = 1.0).
    positions = []
    for split in ("train", "valid", "test"):
        s = ds.split(split)
        label, offsets = np.asarray(s.label), np.asarray(s.offsets)
        positions += [
            int(np.flatnonzero(label[a:b] == 1)[0]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)
        ]
        constant = evaluate_groups(label, np.zeros(len(label)), s.row_impression)
        assert constant["mrr"] < 1.0
    assert len(set(positions)) > 1
    again = _prepare(
        _write_generic(tmp_path / "g2", "tsv", rows),
        tmp_path / "ds2",
        "generic",
        "data.columns={id: movie_id, title: name}",
        "data.negatives=2",
        "data.item_min_interactions=1",
    )
    assert np.array_equal(np.asarray(again.split("test").item), np.asarray(ds.split("test").item))  # seeded


def test_generic_bad_input_names_file_line_and_field(tmp_path: Path):
    rows = _interactions_rows()
    rows[3]["liked"] = 7
    with pytest.raises(DataError, match=r"interactions.csv:5 \(field liked\): label '7'"):
        _prepare(_write_generic(tmp_path / "a", "csv", rows), tmp_path / "x", "generic", *COLUMNS)
    rows = _interactions_rows()
    rows[0]["movie_id"] = "zz"
    with pytest.raises(
        DataError, match=r"interactions.csv:2 \(field movie_id\): item 'zz' is not in the items file"
    ):
        _prepare(_write_generic(tmp_path / "b", "csv", rows), tmp_path / "y", "generic", *COLUMNS)
    with pytest.raises(DataError, match=r"missing items.tsv, items.csv or items.parquet"):
        _prepare(tmp_path, tmp_path / "z", "generic")


@pytest.mark.integration
def test_training_on_the_goodreads_demo_groups_by_user(tmp_path: Path):
    cfg = build_config(
        [
            "data=demo-goodreads",
            "data.demo_scale=tiny",
            "data.user_min_positives=5",
            "model=naml",
            "model.hidden_size=32",
            "model.attention_hidden=16",
            "model.category_dim=8",
            "embed.dim=24",
            "exp.batch_size=32",
            "exp.epochs=1",
            f"exp.out_dir={tmp_path / 'run'}",
        ]
    )
    _, metrics = train(cfg, progress=False)
    ds = Dataset(_dataset_of(cfg))
    test = ds.split("test")
    assert metrics["test"]["impressions"] == test.num_impressions
    assert len(np.unique(np.asarray(test.user))) == test.num_impressions  # one group per user


def _dataset_of(cfg) -> Path:
    from oncerec.data.dataset import resolve_dataset

    return resolve_dataset(cfg.data, progress=False)


def test_goodreads_demo_data_is_deterministic(tmp_path: Path):
    from oncerec.cli import main

    for name in ("a", "b"):
        assert (
            main(["demo-data", str(tmp_path / name), "--format", "goodreads", "--scale", "tiny", "--quiet"])
            == 0
        )
    for f in (BOOKS, INTERACTIONS):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    with gzip.open(tmp_path / "a" / INTERACTIONS, "rt") as f:
        ratings = {json.loads(line)["rating"] for line in f}
    assert ratings == {0, 1, 2, 3, 4, 5}  # positives, negatives and the dropped 0 / 3
