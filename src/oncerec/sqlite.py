"""The SQLite files oncerec keeps (GENRE's response store, the service's added-items store): how one is
recognised and opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

HEADER = b"SQLite format 3\x00"  # the first bytes of every SQLite database file


def head(path: Path) -> bytes:
    """The first bytes of a file, as many as `HEADER` has (fewer for a shorter file)."""
    with open(path, "rb") as f:
        return f.read(len(HEADER))


def connect(path: Path, readonly: bool, wait: float, **kwargs) -> sqlite3.Connection:
    """A connection usable from several threads. The busy timeout (`wait` seconds) comes with the connection,
    before its first statement: any of them may have to wait for another process's write. A URI, so that a
    path holding `?` or `#` is the path."""
    uri = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rwc'}"
    return sqlite3.connect(uri, uri=True, timeout=wait, check_same_thread=False, **kwargs)
