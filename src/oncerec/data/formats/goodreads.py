"""The `goodreads` format: the UCSD Book Graph's files, streamed (see MIND_FORMAT.md), through the ONCE
protocol.

`goodreads_interactions_dedup.json.gz` is read first (user, book, rating, date_added: a rating above
`data.rating_positive_above` is a positive, one from 1 to below `data.rating_negative_below` a negative, the rest
is dropped), then only the books that survive the protocol's filtering are kept from `goodreads_books.json.gz`.
Books become items: title (`title_without_series` when present), the description in the `abstract` field, the
first author as `category` and the most popular descriptive shelf as `subcategory`.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field
from tqdm import tqdm

from oncerec.data.formats.mind import News, read_behaviors, read_news, split_folders
from oncerec.data.formats.protocol import GroupSource, Interactions, ProtocolConfig, grouped
from oncerec.data.formats.registry import Format, register
from oncerec.errors import DataError
from oncerec.paths import publish_dir

BOOKS = "goodreads_books.json.gz"
INTERACTIONS = "goodreads_interactions_dedup.json.gz"
# shelves that say what the reader did, not what the book is about
_STATUS_SHELVES = {"to-read", "currently-reading", "read", "favorites", "owned", "books-i-own", "default"}


def goodreads_files(root: Path) -> tuple[Path, Path]:
    books, interactions = root / BOOKS, root / INTERACTIONS
    for f in (books, interactions):
        if not f.is_file():
            raise DataError(
                f, f"missing Goodreads file (a Goodreads folder holds {BOOKS} and {INTERACTIONS})"
            )
    return books, interactions


def json_lines(
    path: Path, progress: bool = False, gzipped: bool = True, shape: str = ""
) -> Iterator[tuple[int, dict]]:
    """(line number, object) of a JSON-lines file, gzipped or plain; blank lines skipped, a bad line a
    DataError naming file:line (`shape` shows what an object should look like)."""
    expected = f"expected a JSON object {shape}".strip()
    try:
        # -sig: a leading byte-order mark is dropped
        with (
            gzip.open(path, "rt", encoding="utf-8-sig") if gzipped else open(path, encoding="utf-8-sig") as f
        ):
            for n, line in enumerate(
                tqdm(f, desc=path.name, unit=" lines", disable=not progress, leave=False), 1
            ):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(path, f"not valid JSON ({e.msg} at column {e.colno})", n) from None
                except ValueError:  # an integer of more digits than Python converts (4,300)
                    raise DataError(path, "not valid JSON (a number too long to read)", n) from None
                if not isinstance(obj, dict):
                    raise DataError(path, expected, n)
                yield n, obj
    except (OSError, EOFError, UnicodeDecodeError) as e:
        if gzipped:
            raise DataError(path, f"cannot read gzip text: {e}") from None
        if isinstance(e, UnicodeDecodeError):
            raise DataError(path, f"not valid UTF-8: {e.reason}") from None
        raise


def json_field(obj: dict, key: str, path: Path, n: int, kind=str):
    """obj[key], of type `kind`, or a DataError naming file:line and the field (shared with Adressa)."""
    if key not in obj:
        raise DataError(path, "missing field", n, key)
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise DataError(path, f"expected {kind.__name__}, got {type(value).__name__} {value!r}", n, key)
    return value


def parse_goodreads_time(value: str) -> int:
    """`Mon Aug 01 13:41:57 -0700 2016` -> epoch seconds."""
    return int(datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y").timestamp())


class GoodreadsConfig(ProtocolConfig):
    """Goodreads' keys: which ratings are positives and negatives."""

    format: Literal["goodreads"] = "goodreads"
    rating_positive_above: int = Field(3, description="A rating above this is a positive.")
    rating_negative_below: int = Field(
        3, description="A rating from 1 to below this is a negative (0 = unrated, and the rest, drop)."
    )


def read_interactions(path: Path, cfg: GoodreadsConfig, progress: bool = False) -> Interactions:
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    u, i, lab, t = [], [], [], []
    for n, obj in json_lines(path, progress):
        rating = json_field(obj, "rating", path, n, int)
        if not 0 <= rating <= 5:
            raise DataError(path, f"rating {rating} outside 0..5", n, "rating")
        if rating > cfg.rating_positive_above:
            label = 1
        elif 1 <= rating < cfg.rating_negative_below:
            label = 0
        else:
            continue
        user, book = json_field(obj, "user_id", path, n), json_field(obj, "book_id", path, n)
        try:
            when = parse_goodreads_time(json_field(obj, "date_added", path, n))
        except ValueError:
            raise DataError(
                path,
                f"bad time {obj['date_added']!r}, expected e.g. Mon Aug 01 13:41:57 -0700 2016",
                n,
                "date_added",
            ) from None
        u.append(users.setdefault(user, len(users)))
        i.append(items.setdefault(book, len(items)))
        lab.append(label)
        t.append(when)
    if not u:
        raise DataError(path, "no usable interaction (every rating was dropped by the thresholds)")
    return Interactions.from_lists(u, i, lab, t, None, users, items)


def read_books(path: Path, wanted: set[str], progress: bool = False) -> dict[str, News]:
    """The wanted books as items, by book id."""
    found: dict[str, News] = {}
    for n, obj in json_lines(path, progress):
        book = json_field(obj, "book_id", path, n)
        if book not in wanted:
            continue
        title = obj.get("title_without_series") or json_field(obj, "title", path, n)
        description = obj.get("description") or ""
        authors = obj.get("authors") or []
        if not isinstance(authors, list) or not all(isinstance(a, dict) for a in authors):
            raise DataError(path, "expected a list of {author_id, role} objects", n, "authors")
        author = str(authors[0].get("author_id", "")) if authors else ""
        shelves = obj.get("popular_shelves") or []
        if not isinstance(shelves, list) or not all(isinstance(s, dict) for s in shelves):
            raise DataError(path, "expected a list of {count, name} objects", n, "popular_shelves")
        shelf = _top_shelf(shelves, path, n)
        found[book] = News(book, author, shelf, str(title), str(description), str(obj.get("url", "")))
    return found


def _top_shelf(shelves: list[dict], path: Path, n: int) -> str:
    best, best_count = "", -1
    for s in shelves:
        name = str(s.get("name", ""))
        try:
            count = int(s.get("count", 0))
        except (TypeError, ValueError):
            raise DataError(
                path, f"shelf count {s.get('count')!r} is not an integer", n, "popular_shelves"
            ) from None
        if name and name not in _STATUS_SHELVES and count > best_count:
            best, best_count = name, count
    return best


def write_demo_goodreads(out: Path, mind_folder: Path, seed: int = 0) -> dict:
    """Goodreads-format files from the demo world (a demo MIND folder): every news item becomes a book (its
    subcategory the top shelf, one of three authors per subcategory), every click a rating of 4-5, a shown but
    unclicked item a rating of 1-2 (30%), 3 or 0 (10%, dropped by the protocol) or nothing. Written atomically."""
    import os
    import shutil
    import time
    import zlib

    rng = np.random.default_rng(seed)
    folders = split_folders(mind_folder)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    def stamp(t: int) -> str:
        return time.strftime("%a %b %d %H:%M:%S +0000 %Y", time.gmtime(t))

    try:
        books: dict[str, News] = {}
        for folder in folders.values():
            for news in read_news(folder / "news.tsv"):
                books.setdefault(news.news_id, news)
        with _gz_writer(tmp / BOOKS) as f:
            for news in books.values():
                author = f"{zlib.crc32(news.subcategory.encode()) % 100_000}{int(rng.integers(3))}"
                shelves = [
                    {"count": str(int(rng.integers(50, 500))), "name": "to-read"},
                    {"count": str(int(rng.integers(20, 50))), "name": news.subcategory},
                    {"count": str(int(rng.integers(5, 20))), "name": news.category},
                ]
                f.write(
                    json.dumps(
                        {
                            "book_id": news.news_id,
                            "title": news.title,
                            "title_without_series": news.title,
                            "description": news.abstract,
                            "authors": [{"author_id": author, "role": ""}],
                            "popular_shelves": shelves,
                            "language_code": "eng",
                            "url": news.url,
                        }
                    )
                    + "\n"
                )
        seen: set[tuple[str, str]] = set()
        rows = 0
        with _gz_writer(tmp / INTERACTIONS) as f:
            for folder in folders.values():
                for b in read_behaviors(folder / "behaviors.tsv"):
                    events = [
                        (h, int(rng.integers(4, 6)), b.time - int(rng.integers(1, 30)) * 86_400)
                        for h in b.history
                    ]
                    for item, clicked in zip(b.candidates, b.labels or [], strict=False):
                        u = rng.random()
                        rating = (
                            int(rng.integers(4, 6))
                            if clicked
                            else int(rng.integers(1, 3))
                            if u < 0.3
                            else int(rng.choice([0, 3]))
                            if u < 0.4
                            else None
                        )
                        if rating is not None:
                            events.append((item, rating, b.time))
                    for item, rating, t in events:
                        if (b.user_id, item) in seen:
                            continue
                        seen.add((b.user_id, item))
                        record = {
                            "user_id": b.user_id,
                            "book_id": item,
                            "is_read": rating > 0,
                            "rating": rating,
                        }
                        f.write(json.dumps(record | {"date_added": stamp(t), "read_at": ""}) + "\n")
                        rows += 1
        summary = {
            "generator": "oncerec.data.goodreads",
            "books": len(books),
            "interactions": rows,
            "seed": seed,
        }
        (tmp / "meta.json").write_text(json.dumps(summary, indent=2) + "\n")
        publish_dir(tmp, out, "meta.json")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _gz_writer(path: Path) -> io.TextIOWrapper:
    # mtime=0: the same (scale, seed) gives byte-identical files
    return io.TextIOWrapper(gzip.GzipFile(path, "wb", mtime=0), encoding="utf-8")


def files(root: Path, cfg: GoodreadsConfig) -> list[Path]:
    return list(goodreads_files(root))


def open_goodreads(root: Path, cfg: GoodreadsConfig, progress: bool = False) -> GroupSource:
    """The interactions through the protocol; the books that survive it, read from the books file."""
    books, interactions = goodreads_files(root)
    x = read_interactions(interactions, cfg, progress)
    wanted = {x.item_ids[i] for i in set(x.item.tolist())}
    items = read_books(books, wanted, progress)
    # interactions with books the books file lacks keep empty content, as MIND's missing ids do
    for book in wanted - items.keys():
        items[book] = News(book, "", "", "", "", "")
    return grouped(x, items, cfg, [books, interactions], interactions)


register(
    Format(
        "goodreads",
        GoodreadsConfig,
        files,
        open_goodreads,
        about=f"{BOOKS} and {INTERACTIONS}",
        domain="books",
    )
)
