"""The `pens` format, PENS (Microsoft's PErsonalized News headlineS, https://msnews.github.io/pens_data.html):
the recommendation half of it, one folder with

    news.tsv    News ID, Category, Topic, Headline, News body, Title entity, Entity content
    train.tsv   UserID, ClicknewsID, dwelltime, exposure_time, pos, neg, start, end, dwelltime_pos
    valid.tsv   the same columns

tab-separated, each file with a header line (skipped when present). A line of train.tsv / valid.tsv is one
impression: the history `ClicknewsID`, the clicked `pos` and unclicked `neg` news, shown at `start` (MIND's
time format). PENS has no impression ids: an impression's id is its line number, so a metric or an error names
the line. `personalized_test.tsv` (the headline-generation test, written by annotators) is not read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from oncerec.data.formats.mind import Behavior, News, read_news, time_field, tsv_rows
from oncerec.data.formats.registry import DataConfig, Format, register
from oncerec.data.formats.source import Source
from oncerec.errors import DataError

NEWS_COLUMNS = ("News ID", "Category", "Topic", "Headline", "News body", "Title entity", "Entity content")
IMPRESSION_COLUMNS = (
    "UserID",
    "ClicknewsID",
    "dwelltime",
    "exposure_time",
    "pos",
    "neg",
    "start",
    "end",
    "dwelltime_pos",
)
# oncerec's split name -> PENS file; valid.tsv plays MIND's dev (data.split=once halves it into valid / test)
FILES = {"news": "news.tsv", "train": "train.tsv", "dev": "valid.tsv"}


def pens_files(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise DataError(root, "PENS folder not found")
    files = {k: root / name for k, name in FILES.items()}
    for path in files.values():
        if not path.is_file():
            raise DataError(path, f"missing PENS file (a PENS folder holds {', '.join(FILES.values())})")
    return files


def read_pens_news(path: Path, progress: bool = False) -> Iterator[News]:
    # the entity columns (WikiData JSON) are not used; the body is the `abstract` field
    return read_news(
        path,
        progress,
        NEWS_COLUMNS,
        lambda c: News(c[0], c[1], c[2], c[3], c[4], ""),
        header=NEWS_COLUMNS[0],
    )


def read_impressions(path: Path, seed: int, progress: bool = False) -> Iterator[Behavior]:
    """One labelled impression per line. PENS lists the clicked news before the unclicked ones: each
    impression's candidates are put in a seeded random order, because ranking metrics break score ties by
    position and positives-first would win every tie (see protocol.shuffle_candidates)."""
    rng = np.random.default_rng(seed)
    col = {name: k for k, name in enumerate(IMPRESSION_COLUMNS)}
    for n, cols in tsv_rows(path, IMPRESSION_COLUMNS, progress, header=IMPRESSION_COLUMNS[0]):
        user = cols[col["UserID"]]
        if not user:
            raise DataError(path, "empty user id", n, "UserID")
        t = time_field(cols[col["start"]], path, n, "start")
        pos, neg = cols[col["pos"]].split(), cols[col["neg"]].split()
        if not pos and not neg:
            raise DataError(path, "no candidates (pos and neg are both empty)", n, "pos")
        candidates, labels = pos + neg, [1] * len(pos) + [0] * len(neg)
        order = rng.permutation(len(candidates))
        yield Behavior(
            n,
            n,
            user,
            t,
            cols[col["ClicknewsID"]].split(),
            [candidates[i] for i in order],
            [labels[i] for i in order],
        )


class PensConfig(DataConfig):
    """PENS has no keys of its own (its candidates are shuffled with `split_seed`)."""

    format: Literal["pens"] = "pens"


def files(root: Path, cfg: DataConfig) -> list[Path]:
    return list(pens_files(root).values())


class PensSource(Source):
    """PENS: one news file, train.tsv and valid.tsv as MIND's train and dev."""

    items_file = "news.tsv"
    fields = {"history": "ClicknewsID", "candidates": "pos/neg", "labels": "pos"}

    def __init__(self, root: Path, cfg: DataConfig, progress: bool = False):
        self.paths = pens_files(root)
        self.files = list(self.paths.values())
        self.splits = ["train", "dev"]
        self.seed = cfg.split_seed
        self.progress = progress

    def news(self, split: str) -> Iterator[News]:
        # the news belong to no split: listed once, with train (the word vocabulary is built on them)
        return read_pens_news(self.paths["news"], self.progress) if split == "train" else iter(())

    def behaviors(self, split: str) -> Iterator[Behavior]:
        # split k's candidate order is drawn with split_seed + k, as the protocol's groups are
        return read_impressions(self.paths[split], self.seed + self.splits.index(split), self.progress)

    def where(self, split: str) -> Path:
        return self.paths[split]


register(
    Format(
        "pens",
        PensConfig,
        files,
        PensSource,
        about="news.tsv, train.tsv, valid.tsv",
    )
)
