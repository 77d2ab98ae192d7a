"""The `ebnerd` format, EB-NeRD (Ekstra Bladet News Recommendation Dataset, RecSys Challenge 2024;
https://recsys.eb.dk):

    articles.parquet                 article_id, title, subtitle, category_str, subcategory, url, ...
    train/behaviors.parquet          impression_id, user_id, impression_time, article_ids_inview,
                                     article_ids_clicked, ...
    train/history.parquet            user_id, article_id_fixed (the user's clicks of the 21 days before the
                                     split's week, oldest first), ...
    validation/...                   the same two files
    test/...                         optional (the separate test download): no article_ids_clicked

Read with pyarrow in record batches (EB-NeRD-large's behaviours stream in bounded memory). An impression is one
behaviours row: candidates `article_ids_inview` (shuffled by Ekstra Bladet already), labels from
`article_ids_clicked` (as the ebrec toolbox does: an in-view article is a positive when it was clicked),
history the user's `article_id_fixed` of the same split (its last `data.history_len` clicks, all that
`prepare` keeps). Every problem names the file, the 1-based row and the
column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from oncerec.data.formats.mind import Behavior, News
from oncerec.data.formats.registry import DataConfig, Format, register
from oncerec.data.formats.source import Source
from oncerec.errors import DataError

ARTICLES = "articles.parquet"
# oncerec's split name -> EB-NeRD folder; validation plays MIND's dev (data.split=once halves it)
FOLDERS = {"train": "train", "dev": "validation", "test": "test"}
BATCH_ROWS = 65_536


def _int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def _ints(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type)


def _text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


KINDS: dict[Callable, str] = {
    _int: "integers",
    _ints: "lists of integers",
    _text: "strings",
    pa.types.is_timestamp: "timestamps",
}
ARTICLE_COLUMNS = {"article_id": _int, "title": _text}
ARTICLE_OPTIONAL = {"subtitle": _text, "category_str": _text, "subcategory": _ints, "url": _text}
BEHAVIOR_COLUMNS = {
    "impression_id": _int,
    "user_id": _int,
    "impression_time": pa.types.is_timestamp,
    "article_ids_inview": _ints,
}
HISTORY_COLUMNS = {"user_id": _int, "article_id_fixed": _ints}


def ebnerd_files(root: Path) -> dict[str, dict[str, Path]]:
    """{split: {behaviors, history}} plus {"articles": {"articles": path}}; train and validation required."""
    if not root.is_dir():
        raise DataError(root, "EB-NeRD folder not found")
    if not (root / ARTICLES).is_file():
        raise DataError(root / ARTICLES, "missing EB-NeRD file (an EB-NeRD folder holds articles.parquet)")
    found: dict[str, dict[str, Path]] = {"articles": {"articles": root / ARTICLES}}
    for split, folder in FOLDERS.items():
        if not (root / folder).is_dir():
            if split != "test":
                raise DataError(
                    root, f"missing split folder `{folder}/` (EB-NeRD: train/, validation/, test/)"
                )
            continue
        found[split] = {name: root / folder / f"{name}.parquet" for name in ("behaviors", "history")}
        for path in found[split].values():
            if not path.is_file():
                raise DataError(path, f"missing file in split `{folder}`")
    return found


def _open(path: Path, required: dict, optional: dict | None = None) -> tuple[pq.ParquetFile, list[str]]:
    """The file and the columns to read, each checked present (when required) and of its type."""
    try:
        f = pq.ParquetFile(path)
    except Exception as e:
        raise DataError(path, f"cannot read Parquet: {e}") from None
    schema = f.schema_arrow
    columns = []
    for name, ok in {**required, **(optional or {})}.items():
        if name not in schema.names:
            if name in required:
                raise DataError(path, "missing column", field=name)
            continue
        if not ok(schema.field(name).type):
            raise DataError(path, f"expected {KINDS[ok]}, got {schema.field(name).type}", field=name)
        columns.append(name)
    return f, columns


def _batches(f: pq.ParquetFile, columns: list[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(1-based number of the batch's first row, batch)."""
    first = 1
    for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        yield first, batch
        first += batch.num_rows


def _no_nulls(array: pa.Array, path: Path, first: int, field: str, what: str = "empty value") -> None:
    if array.null_count:
        r = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(path, what, field=field, row=first + r)


def _lists(array: pa.Array, path: Path, first: int, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(row offsets, flat values) of a list column, refusing null lists and null elements."""
    _no_nulls(array, path, first, field, "empty list (null)")
    values = array.flatten()  # of a sliced array: from its first list on
    offsets = array.offsets.to_numpy()
    offsets = offsets - offsets[0]
    if values.null_count:
        at = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        row = int(np.searchsorted(offsets, at, side="right")) - 1  # the list holding that element
        raise DataError(path, "null article id in the list", field=field, row=first + row)
    return offsets, values.to_numpy()


def _seconds(array: pa.Array) -> np.ndarray:
    """Epoch seconds (UTC) of a timestamp column, whatever its unit."""
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[array.type.unit]
    return array.cast(pa.int64()).to_numpy() // per_second


def read_articles(path: Path) -> Iterator[News]:
    """Articles as items: title, the subtitle as `abstract`, `category_str` as category, the first subcategory id
    (EB-NeRD names none) as subcategory."""
    f, columns = _open(path, ARTICLE_COLUMNS, ARTICLE_OPTIONAL)
    seen: set[int] = set()
    for first, batch in _batches(f, columns):
        _no_nulls(batch.column("article_id"), path, first, "article_id")
        col = {c: batch.column(c).to_pylist() for c in columns}
        for r, article in enumerate(col["article_id"]):
            if article in seen:
                raise DataError(path, f"article {article} appears twice", field="article_id", row=first + r)
            seen.add(article)
            sub = col["subcategory"][r] if "subcategory" in col else None
            yield News(
                str(article),
                (col["category_str"][r] if "category_str" in col else None) or "",
                str(sub[0]) if sub else "",
                col["title"][r] or "",
                (col["subtitle"][r] if "subtitle" in col else None) or "",
                (col["url"][r] if "url" in col else None) or "",
            )
    if not seen:
        raise DataError(path, "no articles: the file has no row")


class Histories:
    """A split's click histories as flat arrays (EB-NeRD-large: ~800k users, tens of millions of clicks, too
    many for Python strings): user_id -> the last `keep` clicked article ids, oldest first. `prepare` keeps no
    more than `data.history_len` clicks, so only those are turned into item ids (and checked against the
    articles)."""

    def __init__(self, path: Path, keep: int):
        f, columns = _open(path, HISTORY_COLUMNS)
        self.keep = keep
        self.row: dict[int, int] = {}
        offsets, values, base = [np.zeros(1, np.int64)], [], 0
        for first, batch in _batches(f, columns):
            users = batch.column("user_id")
            _no_nulls(users, path, first, "user_id")
            off, val = _lists(batch.column("article_id_fixed"), path, first, "article_id_fixed")
            for r, user in enumerate(users.to_pylist()):
                if user in self.row:
                    raise DataError(path, f"user {user} has two history rows", field="user_id", row=first + r)
                self.row[user] = len(self.row)
            offsets.append(off[1:] + base)
            values.append(val)
            base += len(val)
        self.offsets = np.concatenate(offsets)
        self.values = np.concatenate(values) if values else np.zeros(0, np.int64)

    def get(self, user: int) -> list[str]:
        r = self.row.get(user)
        if r is None:
            return []
        start, end = self.offsets[r], self.offsets[r + 1]
        return [str(a) for a in self.values[max(start, end - self.keep) : end].tolist()]


def read_behaviors(path: Path, history: Histories, counts: dict) -> Iterator[Behavior]:
    """Impressions of one split. Unlabelled (test) when the file has no `article_ids_clicked`. The test
    download's beyond-accuracy rows (`is_beyond_accuracy`: synthetic impressions sharing id 0) are skipped and
    counted, as are clicked articles that were not in view (no candidate to label)."""
    f, columns = _open(path, BEHAVIOR_COLUMNS, {"article_ids_clicked": _ints})
    labelled = "article_ids_clicked" in columns
    beyond = "is_beyond_accuracy" in f.schema_arrow.names
    seen: set[int] = set()
    for first, batch in _batches(f, columns + (["is_beyond_accuracy"] if beyond else [])):
        for c in ("impression_id", "user_id", "impression_time"):
            _no_nulls(batch.column(c), path, first, c)
        skip = batch.column("is_beyond_accuracy").to_pylist() if beyond else None
        ids, users = batch.column("impression_id").to_pylist(), batch.column("user_id").to_pylist()
        times = _seconds(batch.column("impression_time"))
        offsets, inview = _lists(batch.column("article_ids_inview"), path, first, "article_ids_inview")
        if labelled:
            c_off, clicked = _lists(batch.column("article_ids_clicked"), path, first, "article_ids_clicked")
            clicked = clicked.tolist()
        inview = inview.tolist()
        for r, imp in enumerate(ids):
            if skip is not None and skip[r]:
                counts["beyond_accuracy_rows_skipped"] = counts.get("beyond_accuracy_rows_skipped", 0) + 1
                continue
            row = first + r
            if imp < 0:
                raise DataError(path, f"impression id {imp} is negative", field="impression_id", row=row)
            if imp in seen:
                raise DataError(path, f"impression id {imp} appears twice", field="impression_id", row=row)
            seen.add(imp)
            shown = inview[offsets[r] : offsets[r + 1]]
            if not shown:
                raise DataError(path, "no candidates", field="article_ids_inview", row=row)
            labels = None
            if labelled:
                hits = set(clicked[c_off[r] : c_off[r + 1]])
                labels = [int(a in hits) for a in shown]
                unseen = len(hits.difference(shown))
                if unseen:
                    counts["clicks_not_in_view"] = counts.get("clicks_not_in_view", 0) + unseen
            yield Behavior(
                row,
                imp,
                str(users[r]),
                int(times[r]),
                history.get(users[r]),
                [str(a) for a in shown],
                labels,
            )


class EbnerdConfig(DataConfig):
    """EB-NeRD has no keys of its own (`history_len` cuts its histories)."""

    format: Literal["ebnerd"] = "ebnerd"


def files(root: Path, cfg: DataConfig) -> list[Path]:
    return [p for split in ebnerd_files(root).values() for p in split.values()]


class EbnerdSource(Source):
    """EB-NeRD: one articles file; train / validation [/ test] as MIND's train / dev [/ test]."""

    protocol_key = "ebnerd"
    items_file = ARTICLES
    fields = {
        "history": "article_id_fixed",
        "candidates": "article_ids_inview",
        "labels": "article_ids_clicked",
    }
    rows = True

    def __init__(self, root: Path, cfg: DataConfig, progress: bool = False):
        self.paths = ebnerd_files(root)
        self.history_len = cfg.history_len
        self.files = [p for files in self.paths.values() for p in files.values()]
        self.splits = [s for s in FOLDERS if s in self.paths]
        self.protocol = {}  # counts of what was skipped

    def news(self, split: str) -> Iterator[News]:
        return read_articles(self.paths["articles"]["articles"]) if split == "train" else iter(())

    def behaviors(self, split: str) -> Iterator[Behavior]:
        history = Histories(self.paths[split]["history"], self.history_len)
        counts = self.protocol.setdefault(split, {})
        return read_behaviors(self.paths[split]["behaviors"], history, counts)

    def where(self, split: str) -> Path:
        return self.paths[split]["behaviors"]


register(
    Format(
        "ebnerd",
        EbnerdConfig,
        files,
        EbnerdSource,
        about="articles.parquet, train/, validation/, optional test/",
    )
)
