"""What `prepare` reads, whatever the format: a raw dataset seen as splits of items (`News`) and impressions
(`Behavior`). Each format's module implements a `Source` for its files (the ONCE protocol's formats share
`protocol.GroupSource`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the records are the MIND reader's, which implements a Source
    from oncerec.data.formats.mind import Behavior, News


class Source:
    splits: list[str]  # in reading order; train first
    files: list[Path]  # what the content hash covers
    protocol: dict | None = None  # what stats.json records about the format or protocol, if anything
    protocol_key = "protocol"  # ... under this key
    items_file = "any split's news.tsv"  # where an id missing from every items file was looked for
    # the columns messages about the history, the candidates and their labels name
    fields = {"history": "history", "candidates": "impressions", "labels": "impressions"}
    rows = False  # Behavior.line is a table's row (Parquet), not a text line
    repeated: int | None = None  # interactions dropped as repeats (formats without impressions)
    # each split is a file of impressions, refused when empty or without a click (`prepare`); the protocol's
    # splits (GroupSource) may be empty on small data
    split_files = True

    def warnings(self) -> list[str]:
        """Lines for the preparation log once everything is read (what was counted, not refused)."""
        return []

    def news(self, split: str) -> Iterator[News]:
        raise NotImplementedError

    def behaviors(self, split: str) -> Iterator[Behavior]:
        raise NotImplementedError

    def where(self, split: str) -> Path:
        """The file named in messages about this split's impressions."""
        raise NotImplementedError

    def entity_vectors(self, wanted: set[str]) -> dict[str, np.ndarray]:
        """Vectors of the wanted entities (MIND's entity_embedding.vec files); none by default."""
        return {}


def files_digest(files: list[Path]) -> str:
    """Content hash of raw files (so a changed file invalidates the cache)."""
    h = hashlib.blake2b(digest_size=16)
    for path in files:
        h.update(f"{path.parent.name}/{path.name}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()
