"""The `generic` format: a folder with an items file and an interactions file, each `.tsv`, `.csv` or
`.parquet`.

    items.<ext>          one row per item: an id column and any text / categorical columns
    interactions.<ext>   user, item, optional label (1/0, default 1), optional time (integer or ISO date),
                         optional group (e.g. an impression id: evaluation then groups by it, not by user)

Column names are mapped onto oncerec's fields with `data.columns` (e.g. `{title: name, abstract: plot,
category: genre}`); unmapped fields default to their own name and may be absent (empty text).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from oncerec.data.formats.mind import News
from oncerec.data.formats.protocol import GroupSource, Interactions, ProtocolConfig, grouped, time_value
from oncerec.data.formats.registry import Format, register
from oncerec.errors import DataError

ITEM_FIELDS = ("id", "title", "abstract", "category", "subcategory")
INTERACTION_FIELDS = ("user", "item", "label", "time", "group")
EXTENSIONS = (".tsv", ".csv", ".parquet")


class GenericConfig(ProtocolConfig):
    """The generic format's key: which of your columns hold oncerec's fields."""

    format: Literal["generic"] = "generic"
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="oncerec field -> column name, for items (id, title, abstract, category, subcategory) and "
        "interactions (user, item, label, time, group); unmapped fields use their own name.",
    )


def generic_files(root: Path) -> tuple[Path, Path]:
    found = []
    for stem in ("items", "interactions"):
        matches = [root / f"{stem}{ext}" for ext in EXTENSIONS if (root / f"{stem}{ext}").is_file()]
        if not matches:
            raise DataError(root, f"missing {stem}.tsv, {stem}.csv or {stem}.parquet (generic format)")
        found.append(matches[0])
    return found[0], found[1]


def _rows(path: Path, used: set[str], text: set[str] = frozenset()) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number — or row number + 1 for Parquet, counting the header — , row as strings). `used`: the
    columns oncerec reads; of those, a Parquet list column is read only where it is text (`text`: its elements
    joined by spaces), and refused elsewhere (an id or a category is one value)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:
            raise DataError(path, f"cannot read Parquet: {e}") from None
        columns = {
            c: _parquet_column(table.column(c), path, c, c in used, c in text) for c in table.column_names
        }
        for r in range(table.num_rows):
            yield r + 2, {c: v[r] for c, v in columns.items()}
        return
    # utf-8-sig: a byte-order mark (a CSV saved by Excel) would otherwise stick to the first column's name
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
        try:
            for row in reader:
                if None in row:
                    raise DataError(path, "more values than header columns", reader.line_num)
                yield reader.line_num, {k: v or "" for k, v in row.items()}
        except UnicodeDecodeError as e:
            raise DataError(path, f"not valid UTF-8: {e.reason}") from None
        except csv.Error as e:
            raise DataError(path, f"malformed CSV: {e}", reader.line_num) from None


def _parquet_column(column, path: Path, name: str, used: bool, text: bool) -> list[str]:
    """A Parquet column (pyarrow ChunkedArray) as strings; see `_rows` for list columns."""
    import pyarrow as pa

    values = column.to_pylist()
    kind = column.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        if used and not text:
            raise DataError(
                path,
                f"a list column ({kind}): oncerec reads one value per row here; store one (e.g. the first)",
                field=name,
            )
        return [" ".join(str(e) for e in v if e is not None) if v else "" for v in values]
    return ["" if v is None else str(v) for v in values]


def _column(cfg: GenericConfig, field: str) -> str:
    return cfg.columns.get(field, field)


def _check_columns(
    path: Path, header: Iterable[str], cfg: GenericConfig, fields: tuple[str, ...], required: tuple[str, ...]
) -> None:
    """The columns of the required fields and of every field `data.columns` maps are in the file: a mistyped
    mapping would otherwise read as an absent column (empty titles, every label 1)."""
    header = list(header)
    for f in fields:
        col = _column(cfg, f)
        if col not in header and (f in required or f in cfg.columns):
            raise DataError(
                path,
                f"no column `{col}` for {f} (data.columns.{f}); the file's columns: {', '.join(header)}",
                field=col,
            )


def read_items(path: Path, cfg: GenericConfig) -> dict[str, News]:
    id_col = _column(cfg, "id")
    items: dict[str, News] = {}
    used = {_column(cfg, f) for f in ITEM_FIELDS}
    for n, row in _rows(path, used, text={_column(cfg, "title"), _column(cfg, "abstract")}):
        if not items:
            _check_columns(path, row, cfg, ITEM_FIELDS, required=("id",))
        item = row[id_col]
        if not item:
            raise DataError(path, "empty item id", n, id_col)
        if item in items:
            raise DataError(path, f"item id {item} appears twice", n, id_col)
        get = {f: row.get(_column(cfg, f), "") for f in ITEM_FIELDS[1:]}
        items[item] = News(item, get["category"], get["subcategory"], get["title"], get["abstract"], "")
    if not items:
        raise DataError(path, "no items")
    return items


def _time(value: str, path: Path, n: int, col: str) -> int:
    try:
        return time_value(int(value), path, n, col)
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(value).timestamp())
    except ValueError:
        shown = value if len(value) <= 40 else f"{value[:40]}..."
        raise DataError(path, f"bad time {shown!r}: expected an integer or an ISO date", n, col) from None


def read_interactions(path: Path, cfg: GenericConfig, known_items: dict[str, News]) -> Interactions:
    cols = {f: _column(cfg, f) for f in INTERACTION_FIELDS}
    users: dict[str, int] = {}
    # every item of the items file, interacted or not: sampled negatives come from all of them
    items: dict[str, int] = {item: k for k, item in enumerate(known_items)}
    groups: dict[str, int] = {}
    u, i, lab, t, g = [], [], [], [], []
    has: dict[str, bool] = {}
    for n, row in _rows(path, set(cols.values())):
        if not has:
            _check_columns(path, row, cfg, INTERACTION_FIELDS, required=("user", "item"))
            has = {f: cols[f] in row for f in INTERACTION_FIELDS}
        user, item = row[cols["user"]], row[cols["item"]]
        if not user:
            raise DataError(path, "empty user id", n, cols["user"])
        if item not in known_items:
            raise DataError(path, f"item {item!r} is not in the items file", n, cols["item"])
        label = row[cols["label"]] if has["label"] else "1"
        if label not in ("0", "1"):
            raise DataError(path, f"label {label!r}: expected 0 or 1", n, cols["label"])
        u.append(users.setdefault(user, len(users)))
        i.append(items.setdefault(item, len(items)))
        lab.append(int(label))
        t.append(_time(row[cols["time"]], path, n, cols["time"]) if has["time"] else len(t))
        if has["group"]:
            g.append(groups.setdefault(row[cols["group"]], len(groups)))
    if not u:
        raise DataError(path, "no interactions")
    return Interactions.from_lists(u, i, lab, t, g if has["group"] else None, users, items)


def files(root: Path, cfg: GenericConfig) -> list[Path]:
    return list(generic_files(root))


def open_generic(root: Path, cfg: GenericConfig, progress: bool = False) -> GroupSource:
    items_file, interactions_file = generic_files(root)
    items = read_items(items_file, cfg)
    x = read_interactions(interactions_file, cfg, items)
    return grouped(x, items, cfg, [items_file, interactions_file], interactions_file)


register(
    Format(
        "generic",
        GenericConfig,
        files,
        open_generic,
        about="items.tsv|.csv|.parquet and interactions.tsv|.csv|.parquet, with data.columns",
    )
)
