"""The `once-goodreads` format: ONCE's released Goodreads folder and the leave-last-out protocol made for it.

The release has the users' reading histories and no interaction splits (ONCE did not publish them), so oncerec
makes its own, documented here and in the Data page ("ONCE's Goodreads release"). Files read:

    tok.bid.dat       line i (0-based) = the Goodreads book id of book index i
    tok.uid.dat       line i (0-based) = the Goodreads user id (hash) of the integer uid i
    book.csv          tab-separated (CSV quoting for titles with quotes): header `bid<TAB>title`, one line per book
    histories.jsonl   {"uid": <int>, "history": [<book index>, ...]}: each user's books in reading order

Items: every book of `tok.bid.dat`, in that order (item row i + 1 = book index i), id = the Goodreads book id,
`title` from book.csv; no abstract, category or subcategory (the release has no author or shelf; the GPT-3.5
descriptions of `book-desc.csv` / `book_summarizer.log` come in through `oncerec genre import` + `genre
merge`, as a `summary` field). Users: id = the `tok.uid.dat` string, so that ONCE's profiler and generator
logs (integer uids) import with `--vocab tok.uid.dat` and `book_summarizer.log`'s book ids are item ids.

Protocol, per user with books h[0], ..., h[n-1] (reading order):

- test: h[n-1] is the positive, its history h[0..n-2] (users with n >= 2);
- valid: h[n-2] is the positive, its history h[0..n-3] (n >= 3);
- train: each h[t], 1 <= t <= n-3, is a positive, its history h[0..t-1] (n >= 4): one group per positive;
- a user with one book has no group (nothing to hold out) and is not in the dataset.

So no history and no training positive of a user holds that user's valid or test book, and every history is
strictly earlier than its positive (the test history holds the valid book, as in leave-one-out evaluation).
Each group then gets random negatives: books of the catalogue (all of tok.bid.dat) that the user never read
(none of h[0..n-1]), `data.negatives` per training group and `data.eval_negatives` per valid / test group
(the preset: 4 and 49), drawn with `data.split_seed`, and its candidates are shuffled (`shuffle_candidates`).
A group's `time` is the position t of its positive in the user's history.

Cold users (ONCE's 2,306 users with 1-5 books, for whom its generator wrote books): a user with n books has a
longest history (the test one) of n - 1 books, so `genre generate --cold-max 4` selects exactly the release's
cold users that are in the dataset (2-5 books); `stats.json` counts them (`once_goodreads`).

A bad line stops preparation with file:line (field): bad JSON, a missing or mistyped field, a uid beyond
tok.uid.dat or given twice, a book index beyond tok.bid.dat or twice in one history, a book of tok.bid.dat
without a line in book.csv (or a book.csv line of a book it does not list), a repeated id in a vocabulary.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from oncerec.data.formats.goodreads import json_lines
from oncerec.data.formats.mind import News
from oncerec.data.formats.protocol import Group, GroupSource, NegativesConfig, sample_negatives
from oncerec.data.formats.registry import Format, register
from oncerec.errors import ConfigError, DataError

BOOK_VOCAB, USER_VOCAB, BOOKS, HISTORIES = "tok.bid.dat", "tok.uid.dat", "book.csv", "histories.jsonl"
FILES = (BOOK_VOCAB, USER_VOCAB, BOOKS, HISTORIES)
COLD_MAX_BOOKS = 5  # ONCE's cold users: 1-5 books


class OnceGoodreadsConfig(NegativesConfig):
    """ONCE's Goodreads release: leave-last-out with random negatives (the preset `once-goodreads`: 4, 49)."""

    format: Literal["once-goodreads"] = "once-goodreads"


def once_goodreads_files(root: Path) -> tuple[Path, Path, Path, Path]:
    paths = tuple(root / name for name in FILES)
    for f in paths:
        if not f.is_file():
            raise DataError(f, f"missing file (ONCE's Goodreads release folder holds {', '.join(FILES)})")
    return paths  # type: ignore[return-value]


def read_vocab(path: Path) -> list[str]:
    """Line i (0-based) is the id of index i; a trailing newline ends the last line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, f"not valid UTF-8: {e.reason}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    ids: list[str] = []
    first: dict[str, int] = {}
    for n, raw in enumerate(lines, 1):
        value = raw.rstrip("\r").strip()
        if not value:
            raise DataError(path, "empty id (line i is the id of index i - 1)", n)
        if value in first:
            raise DataError(path, f"id {value} appears twice (first on line {first[value]})", n)
        first[value] = n
        ids.append(value)
    if not ids:
        raise DataError(path, "no ids")
    return ids


def read_titles(path: Path, book_ids: list[str], vocab_path: Path) -> dict[str, str]:
    """bid -> title for every book of the vocabulary."""
    known = set(book_ids)
    titles: dict[str, str] = {}
    seen_on: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t")
            try:
                header = next(reader, None)
                if header is None or [h.strip() for h in header[:2]] != ["bid", "title"] or len(header) > 2:
                    raise DataError(path, f"expected the header `bid<TAB>title`, got {header!r}", 1)
                for row in reader:
                    n = reader.line_num
                    if not row or row == [""]:
                        continue
                    if len(row) != 2:
                        raise DataError(
                            path, f"expected 2 tab-separated values (bid, title), got {len(row)}", n
                        )
                    bid, title = row[0].strip(), row[1]
                    if "\n" in title or "\r" in title:
                        raise DataError(
                            path, "the title runs over several lines (an unbalanced quote?)", n, "title"
                        )
                    if bid not in known:
                        raise DataError(path, f"book {bid!r} is not in {vocab_path.name}", n, "bid")
                    if bid in seen_on:
                        raise DataError(
                            path, f"book {bid} appears twice (first on line {seen_on[bid]})", n, "bid"
                        )
                    seen_on[bid] = n
                    titles[bid] = title.strip()
            except csv.Error as e:
                raise DataError(path, f"malformed line: {e}", reader.line_num) from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not valid UTF-8: {e.reason}") from None
    for k, bid in enumerate(book_ids):
        if bid not in titles:
            raise DataError(
                path,
                f"book {bid} (book index {k}, line {k + 1} of {vocab_path.name}) has no line here "
                f"({len(book_ids) - len(titles):,} books have none)",
            )
    return titles


def read_histories(path: Path, n_users: int, n_books: int) -> dict[int, list[int]]:
    """uid -> book indices in reading order (users in file order)."""
    histories: dict[int, list[int]] = {}
    line_of: dict[int, int] = {}
    for n, obj in json_lines(path, gzipped=False, shape='{"uid": ..., "history": [...]}'):
        uid = _int(obj, "uid", path, n)
        if not 0 <= uid < n_users:
            raise DataError(path, f"uid {uid} is beyond {USER_VOCAB} (uids 0..{n_users - 1})", n, "uid")
        if uid in line_of:
            raise DataError(path, f"uid {uid} appears twice (first on line {line_of[uid]})", n, "uid")
        if "history" not in obj:
            raise DataError(path, "missing field", n, "history")
        history = obj["history"]
        if not isinstance(history, list):
            raise DataError(
                path, f"expected a list of book indices, got {type(history).__name__}", n, "history"
            )
        seen: set[int] = set()
        for b in history:
            if isinstance(b, bool) or not isinstance(b, int):
                raise DataError(path, f"book index {b!r} is not an integer", n, "history")
            if not 0 <= b < n_books:
                raise DataError(
                    path,
                    f"book index {b} is beyond {BOOK_VOCAB} (indices 0..{n_books - 1})",
                    n,
                    "history",
                )
            if b in seen:
                raise DataError(path, f"book index {b} appears twice in the history", n, "history")
            seen.add(b)
        line_of[uid] = n
        histories[uid] = list(history)
    if not histories:
        raise DataError(path, "no users")
    return histories


def _int(obj: dict, key: str, path: Path, n: int) -> int:
    if key not in obj:
        raise DataError(path, "missing field", n, key)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(path, f"expected an integer, got {type(value).__name__} {value!r}", n, key)
    return value


def leave_last_out(histories: dict[int, list[int]]) -> dict[str, list[Group]]:
    """The protocol (module docstring): {split: groups}, users in uid order, a user's training groups in
    reading order; positives only (negatives are added after)."""
    out: dict[str, list[Group]] = {"train": [], "valid": [], "test": []}
    for uid in sorted(histories):
        h = histories[uid]
        n = len(h)
        for t in range(1, n - 2):
            out["train"].append(Group(uid, t, h[:t], [h[t]], [1]))
        if n >= 3:
            out["valid"].append(Group(uid, n - 2, h[: n - 2], [h[n - 2]], [1]))
        if n >= 2:
            out["test"].append(Group(uid, n - 1, h[: n - 1], [h[n - 1]], [1]))
    return out


@dataclass
class Release:
    items: dict[str, News]  # every book, in tok.bid.dat order
    book_ids: list[str]
    user_ids: list[str]
    histories: dict[int, list[int]]
    files: list[Path]
    histories_file: Path


def read_release(root: Path, cfg: OnceGoodreadsConfig) -> Release:
    if cfg.negatives < 1:
        raise ConfigError(
            "data.negatives=0: ONCE's Goodreads release has no negatives, the once-goodreads protocol samples "
            "them: set data.negatives (e.g. 4) and data.eval_negatives (e.g. 49), or start from the preset "
            "data=once-goodreads (`oncerec prepare --format once-goodreads` does)"
        )
    book_vocab, user_vocab, books, histories_file = once_goodreads_files(Path(root))
    book_ids = read_vocab(book_vocab)
    user_ids = read_vocab(user_vocab)
    titles = read_titles(books, book_ids, book_vocab)
    histories = read_histories(histories_file, len(user_ids), len(book_ids))
    items = {b: News(b, "", "", titles[b], "", "") for b in book_ids}
    files = [book_vocab, user_vocab, books, histories_file]
    return Release(items, book_ids, user_ids, histories, files, histories_file)


def protocol_stats(histories: dict[int, list[int]], n_users: int) -> dict:
    """What stats.json records about the protocol: users by number of books, who is in the dataset, cold users."""
    by_length: dict[int, int] = {}
    for h in histories.values():
        by_length[len(h)] = by_length.get(len(h), 0) + 1
    cold = sum(c for k, c in by_length.items() if 1 <= k <= COLD_MAX_BOOKS)
    cold_kept = sum(c for k, c in by_length.items() if 2 <= k <= COLD_MAX_BOOKS)
    return {
        "protocol": "leave-last-out: test = the last book, valid = the one before (>= 3 books), train = each "
        "earlier book from the second on, each with the books before it as its history",
        "users_in_release": n_users,
        "users_with_history": len(histories),
        "users_by_books": {str(k): by_length[k] for k in sorted(by_length)},
        "users_dropped_one_book": by_length.get(1, 0),
        "cold_users_in_release": cold,
        "cold_users_in_dataset": cold_kept,
        "cold_users_select_with": f"genre generate --cold-max {COLD_MAX_BOOKS - 1}",
    }


def files(root: Path, cfg: OnceGoodreadsConfig) -> list[Path]:
    return list(once_goodreads_files(root))


def open_release(root: Path, cfg: OnceGoodreadsConfig, progress: bool = False) -> GroupSource:
    """The release through leave-last-out, with random negatives."""
    r = read_release(root, cfg)
    groups = leave_last_out(r.histories)
    seen = {u: set(h) for u, h in r.histories.items()}
    sample_negatives(groups, len(r.book_ids), seen, cfg)
    # every book stays an item (the catalogue negatives are drawn from), in tok.bid.dat order
    protocol = protocol_stats(r.histories, len(r.user_ids))
    return GroupSource(r.items, groups, r.book_ids, r.user_ids, r.histories_file, r.files, protocol)


register(
    Format(
        "once-goodreads",
        OnceGoodreadsConfig,
        files,
        open_release,
        about="ONCE's released Goodreads folder (tok.bid.dat, tok.uid.dat, book.csv, histories.jsonl)",
        domain="books",
        preset="once-goodreads",
    )
)
