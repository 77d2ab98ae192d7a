"""The `mind` format: MIND's own folders train/ dev/ [test/], each with news.tsv and behaviors.tsv (see
MIND_FORMAT.md), streamed line by line; each split folder's entity_embedding.vec where present. Also the news
and impression records every format's reader yields, and MIND's TSV reading that PENS and xMIND share.

Readers yield one small tuple per line and hold nothing else, so that MIND-large's behaviours file streams in
constant memory; the caller packs what it needs into arrays. Every problem is a `DataError` naming the file,
the 1-based line and the field.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from oncerec.data.formats.registry import DataConfig, Format, register
from oncerec.data.formats.source import Source
from oncerec.errors import DataError

NEWS_COLUMNS = (
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
)
BEHAVIOR_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
SPLITS = ("train", "dev", "test")
# Impression ids key MIND's leaderboard files: non-negative integers of at most 18 digits, so that every one
# fits int64. `prepare` and `oncerec score` (eval/leaderboard.py) apply this one rule.
ID_DIGITS = 18
IMPRESSION_ID = re.compile(rf"\d{{1,{ID_DIGITS}}}")
BOM = "\ufeff"


ENTITY_FILE = "entity_embedding.vec"  # in each split folder: entity id, then its vector (TransE, 100 floats)


@dataclass(frozen=True, slots=True)
class News:
    news_id: str
    category: str
    subcategory: str
    title: str
    abstract: str
    url: str
    # the title's entities: (entity id, start, end) character spans in the title, from title_entities
    title_entities: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Behavior:
    line: int
    impression_id: int
    user_id: str
    time: int  # seconds since the epoch, UTC
    history: list[str]
    candidates: list[str]
    labels: list[int] | None  # None in an unlabelled (test) split


def iter_lines(path: Path, progress: bool = False, desc: str = "") -> Iterator[tuple[int, str]]:
    """(1-based line number, text without line end) for each line; CRLF accepted; a byte error names the line."""
    if not path.is_file():
        raise DataError(path, "file not found")
    size = path.stat().st_size
    if size == 0:
        raise DataError(path, "file is empty")
    with (
        open(path, "rb") as f,
        tqdm(
            total=size, unit="B", unit_scale=True, desc=desc or path.name, disable=not progress, leave=False
        ) as bar,
    ):
        for n, raw in enumerate(f, 1):
            bar.update(len(raw))
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, f"not valid UTF-8 (byte {e.start} of the line)", line=n) from None
            text = text.rstrip("\n").rstrip("\r")
            if n == 1:
                # a byte-order mark (Excel, Notepad) would otherwise stick to the first id
                text = text.removeprefix(BOM)
            if text:
                yield n, text


def tsv_rows(
    path: Path, columns: tuple[str, ...], progress: bool = False, desc: str = "", header: str = ""
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a tab-separated file whose every line has exactly `columns`. `header`: the name of
    the first column when the file may start with a header line (PENS ships one, MIND none); it is skipped
    (compared without case and spaces: `News ID`, `NewsID` and `news_id` are all a header)."""
    key = _header_key(header)
    for n, text in iter_lines(path, progress, desc):
        cols = text.split("\t")
        if key and n == 1 and _header_key(cols[0]) == key:
            continue
        if len(cols) != len(columns):
            raise DataError(
                path,
                f"expected {len(columns)} tab-separated columns ({', '.join(columns)}), got {len(cols)}",
                n,
            )
        yield n, cols


def _header_key(name: str) -> str:
    return name.replace(" ", "").replace("_", "").lower()


def read_news(
    path: Path,
    progress: bool = False,
    columns: tuple[str, ...] = NEWS_COLUMNS,
    make=None,
    header: str = "",
) -> Iterator:
    """One `make(fields)` per line of a news file whose first column is a unique, non-empty id (default:
    MIND's layout, a `News` with its title entities; PENS and xMIND pass their own columns)."""
    seen: set[str] = set()
    for n, cols in tsv_rows(path, columns, progress, header=header):
        if not cols[0]:
            raise DataError(path, "empty news id", n, columns[0])
        if cols[0] in seen:
            raise DataError(path, f"news id {cols[0]} appears twice in this file", n, columns[0])
        seen.add(cols[0])
        yield make(cols) if make else News(*cols[:6], parse_entities(cols[6], path, n))
    if not seen:
        raise DataError(path, "no news: the file has no line but a header or blank ones")


def parse_entities(text: str, path: Path, line: int) -> tuple[tuple[str, int, int], ...]:
    """MIND's TitleEntities JSON (a list of {"WikidataId", "OccurrenceOffsets", "SurfaceForms", ...}) ->
    (entity id, start, end) spans, one per occurrence; empty or `[]`: none."""
    if text in ("", "[]"):
        return ()

    def bad(what: str) -> DataError:
        return DataError(path, what, line, "title_entities")

    try:
        entities = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad(f"not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(entities, list):
        raise bad("expected a JSON list of entities")
    spans = []
    for k, e in enumerate(entities):
        if not isinstance(e, dict):
            raise bad(f"entity {k} is not a JSON object")
        wid, offsets, forms = e.get("WikidataId"), e.get("OccurrenceOffsets"), e.get("SurfaceForms")
        if not isinstance(wid, str) or not wid:
            raise bad(f"entity {k} has no WikidataId")
        if not isinstance(offsets, list) or not isinstance(forms, list) or len(offsets) != len(forms):
            raise bad(f"entity {k} ({wid}): OccurrenceOffsets and SurfaceForms must be lists of one length")
        for off, form in zip(offsets, forms, strict=True):
            if isinstance(off, bool) or not isinstance(off, int) or off < 0 or not isinstance(form, str):
                raise bad(f"entity {k} ({wid}): bad occurrence {off!r} / {form!r}")
            spans.append((wid, off, off + len(form)))
    return tuple(spans)


def read_entity_vectors(path: Path, wanted: set[str] | None = None) -> dict[str, np.ndarray]:
    """entity_embedding.vec: `id<TAB>v1<TAB>...<TAB>vD` per line (MIND ends lines with a tab) -> id ->
    float32 vector, only the `wanted` ids when given. Every line must have the first line's width."""
    vectors: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    dim = None
    for n, text in iter_lines(path):
        cols = text.split()
        if len(cols) < 2:
            raise DataError(path, "expected an entity id and its vector", n)
        key, values = cols[0], cols[1:]
        if dim is None:
            dim = len(values)
        if len(values) != dim:
            raise DataError(path, f"expected {dim} numbers after the entity id, got {len(values)}", n)
        if key in seen:
            raise DataError(path, f"entity {key} appears twice in this file", n)
        seen.add(key)
        if wanted is not None and key not in wanted:
            continue
        vectors[key] = vector_row(values, path, n, f"entity {key}")
    return vectors


def vector_row(values: list[str], path: Path, line: int, owner: str) -> np.ndarray:
    """The numbers of one line of a vector file (entity_embedding.vec, GloVe) as float32; a value that is not
    a number is an error naming it, the line and whose vector it is."""
    try:
        return np.asarray(values, dtype=np.float32)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise DataError(path, f"{bad!r} is not a number ({owner})", line) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_MONTH_DAY: dict[str, int] = {}


def parse_time(value: str) -> int:
    """`11/15/2019 10:22:32 AM` -> epoch seconds. Hand-written because strptime dominates on MIND-large."""
    try:
        date, clock, half = value.split(" ")
        day = _MONTH_DAY.get(date)
        if day is None:
            m, d, y = (int(x) for x in date.split("/"))
            if not (1 <= m <= 12 and 1 <= d <= calendar.monthrange(y, m)[1]):
                raise ValueError
            day = _MONTH_DAY[date] = calendar.timegm((y, m, d, 0, 0, 0))
        h, mi, s = (int(x) for x in clock.split(":"))
        if not (1 <= h <= 12 and 0 <= mi < 60 and 0 <= s < 61) or half not in ("AM", "PM"):
            raise ValueError
    except ValueError:
        raise ValueError(f"bad time {value!r}, expected MM/DD/YYYY HH:MM:SS AM|PM") from None
    return day + (h % 12 + (12 if half == "PM" else 0)) * 3600 + mi * 60 + s


def time_field(value: str, path: Path, n: int, field: str) -> int:
    """MIND's time format (also PENS'), or a DataError naming the line and field."""
    try:
        return parse_time(value)
    except ValueError as e:
        raise DataError(path, str(e), n, field) from None


def read_behaviors(path: Path, progress: bool = False) -> Iterator[Behavior]:
    """Labelled or not is decided by the first line and must then hold for every line."""
    labelled: bool | None = None
    seen_ids: set[int] = set()
    for n, cols in tsv_rows(path, BEHAVIOR_COLUMNS, progress, desc=f"{path.parent.name}/{path.name}"):
        imp_raw, user, time_raw, hist_raw, cand_raw = cols
        if not IMPRESSION_ID.fullmatch(imp_raw):
            raise DataError(
                path,
                f"impression id {imp_raw!r} is not a non-negative integer of at most {ID_DIGITS} digits",
                n,
                "impression_id",
            )
        imp_id = int(imp_raw)
        if imp_id in seen_ids:
            raise DataError(path, f"impression id {imp_id} appears twice", n, "impression_id")
        seen_ids.add(imp_id)
        if not user:
            raise DataError(path, "empty user id", n, "user_id")
        t = time_field(time_raw, path, n, "time")
        tokens = cand_raw.split()
        if not tokens:
            raise DataError(path, "no candidates", n, "impressions")
        if labelled is None:
            labelled = "-" in tokens[0]
        if labelled:
            cands, labels = [], []
            for tok in tokens:
                news, sep, lab = tok.rpartition("-")
                if not sep or not news or lab not in ("0", "1"):
                    raise DataError(
                        path, f"bad impression token {tok!r}, expected NewsID-0 or NewsID-1", n, "impressions"
                    )
                cands.append(news)
                labels.append(lab == "1")
        else:
            if any(tok.rpartition("-")[2] in ("0", "1") for tok in tokens):
                raise DataError(
                    path,
                    "labelled candidate in an unlabelled file (the first line had no labels)",
                    n,
                    "impressions",
                )
            cands, labels = tokens, None
        yield Behavior(n, imp_id, user, t, hist_raw.split(), cands, labels)


def split_folders(root: Path) -> dict[str, Path]:
    """MIND's split folders present under `root`; train and dev are required."""
    if not root.is_dir():
        raise DataError(root, "MIND folder not found")
    found = {s: root / s for s in SPLITS if (root / s).is_dir()}
    for required in ("train", "dev"):
        if required not in found:
            raise DataError(
                root,
                f"missing split folder `{required}/` (a MIND folder holds train/, dev/ and optionally test/)",
            )
    for s, folder in found.items():
        for name in ("news.tsv", "behaviors.tsv"):
            if not (folder / name).is_file():
                raise DataError(folder / name, f"missing file in split `{s}`")
    return found


class MindConfig(DataConfig):
    """MIND has no keys of its own."""

    format: Literal["mind"] = "mind"


def mind_files(root: Path, cfg: DataConfig | None = None) -> list[Path]:
    folders = split_folders(Path(root))
    files = [folders[s] / n for s in sorted(folders) for n in ("news.tsv", "behaviors.tsv")]
    return files + entity_files(folders)


def entity_files(folders: dict[str, Path]) -> list[Path]:
    """The split folders' entity_embedding.vec files, where present (MIND ships one per split)."""
    return [folders[s] / ENTITY_FILE for s in sorted(folders) if (folders[s] / ENTITY_FILE).is_file()]


class MindSource(Source):
    def __init__(self, root: Path, cfg: DataConfig, progress: bool = False):
        self.folders = split_folders(root)
        self.splits = list(self.folders)
        self.files = mind_files(root)
        self.progress = progress

    def news(self, split: str) -> Iterator[News]:
        return read_news(self.folders[split] / "news.tsv", self.progress)

    def behaviors(self, split: str) -> Iterator[Behavior]:
        return read_behaviors(self.folders[split] / "behaviors.tsv", self.progress)

    def where(self, split: str) -> Path:
        return self.folders[split] / "behaviors.tsv"

    def entity_vectors(self, wanted: set[str]) -> dict[str, np.ndarray]:
        """Every split's file, merged: the same entity has the same vector in each (the first one is kept)."""
        vectors: dict[str, np.ndarray] = {}
        for path in entity_files(self.folders):
            for key, v in read_entity_vectors(path, wanted - vectors.keys()).items():
                if vectors and len(v) != len(next(iter(vectors.values()))):
                    raise DataError(
                        path, f"entity {key}: {len(v)} numbers, the other files have another width"
                    )
                vectors[key] = v
        return vectors


register(
    Format(
        "mind",
        MindConfig,
        mind_files,
        MindSource,
        about="train/, dev/, optional test/, each with news.tsv and behaviors.tsv",
    )
)
