"""Items added to a running service (`serve --persist`): one SQLite file, `items.sqlite` in the added-items
folder (`EXPORT/added/`, or `--added-dir`), one row per `POST /items` request, as the GENRE response store keeps
its answers.

- A request's row is committed (synchronous=FULL: on disk, not only handed to the system) before the request is
  answered: `kill -9` at any moment loses nothing acknowledged, and a transaction cut short leaves nothing.
- Rows are numbered in the order they are committed (SQLite takes one writer at a time, across processes), which
  is the order every process applies them in: every process serving the export (each of `--workers N`) applies
  the rows it has not applied yet before each answer, so that they all serve the same items.
- WAL mode: readers never wait for the writer. It needs shared memory between the processes, so every process
  using one file runs on one machine (not over a network file system).
- The file names the weights it holds vectors of: a store of another export's items is refused, as are a
  damaged row (when the service starts: one line; while serving: a 503) and an older oncerec's folders.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from oncerec.errors import OncerecError
from oncerec.paths import check_writable, existing_folder
from oncerec.sqlite import HEADER, connect, head

STORE = "items.sqlite"
SCHEMA_VERSION = 1
LOCK_WAIT_S = 10.0  # another process committing its items: wait this long for it


class AddedItems:
    """The added-items store of one export: `rows(after)` gives the requests committed after a row, `append`
    commits one. `folder`: where the store is kept; `persist`: whether this process may write it (it is
    created if missing), else it is read when present. Safe to call from several threads."""

    def __init__(self, folder: Path, dim: int, weights: str, persist: bool, what: str):
        """`dim`: the item vectors' size; `weights`: the digest of the export's weights; `what`: how the folder
        was given, for messages (`--added-dir DIR`)."""
        self.folder, self.path, self.dim, self.weights = Path(folder), Path(folder) / STORE, dim, weights
        self.persist = persist
        if persist:
            check_writable(self.folder, f"--persist: {what}", "give --added-dir DIR on a writable disk")
        else:
            existing_folder(self.folder, what)
        self._refuse_folders()
        self._lock = threading.Lock()
        self.db: sqlite3.Connection | None = None
        self._open()

    def _refuse_folders(self) -> None:
        """The layout of oncerec before this store (a numbered folder per request and a `LAST` file) is not
        read: it is refused, with what to do, rather than its items silently left out."""
        if not self.folder.is_dir():
            return
        old = sorted(p.name for p in self.folder.iterdir() if p.name == "LAST" or p.name.isdigit())
        if old:
            raise OncerecError(
                f"{self.folder}: items added by an older oncerec (one folder per request: {', '.join(old[:3])}"
                f"{', ...' if len(old) > 3 else ''}); this one keeps them in {STORE}: move the folder away, "
                "serve with --persist and POST each numbered folder's items.json to /items in order (as "
                '{"items": [...]}), or remove the folder (its items are lost)'
            )

    def _open(self) -> None:
        """Opens the store, created when this process persists and there is none; without `persist` a store
        that is not there yet is opened once another process has made it (`last`, `rows`)."""
        if self.db is not None or not (self.persist or self.path.is_file()):
            return
        if self.path.is_dir():
            raise OncerecError(f"{self.path} is a folder, not the added-items store; remove it")
        if self.path.is_file() and self.path.stat().st_size and head(self.path) != HEADER:
            raise self._damaged("not an SQLite file")
        self.folder.mkdir(parents=True, exist_ok=True)
        db = connect(self.path, not self.persist, LOCK_WAIT_S, isolation_level=None)
        try:
            with self._errors():
                meta = self._meta(db)
        except BaseException:
            db.close()
            raise
        if meta is None:  # made by another process, which has not created the tables yet
            db.close()
            return
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            db.close()
            raise self._damaged(
                f"store version {meta.get('schema_version')}, this oncerec reads {SCHEMA_VERSION}"
            )
        if meta.get("weights_sha256") != self.weights:
            db.close()
            raise OncerecError(
                f"{self.path}: items added to an export of other weights (their vectors are another model's); "
                "give --added-dir another folder, or remove the file (its items are lost)"
            )
        self.db = db

    def _meta(self, db: sqlite3.Connection) -> dict[str, str] | None:
        """The store's `meta` table, the store created first when this process persists; None: a file with
        no table yet."""
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables - {"meta", "requests", "sqlite_sequence"}:
            raise self._damaged(f"an SQLite database with the tables {', '.join(sorted(tables))}")
        if self.persist:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed request survives a power cut too
            # one transaction, each statement a no-op when done: workers starting together create it once
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS requests "
                "(seq INTEGER PRIMARY KEY AUTOINCREMENT, items TEXT NOT NULL, vectors BLOB NOT NULL)"
            )
            db.executemany(
                "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("weights_sha256", self.weights)],
            )
            db.execute("COMMIT")
        elif not tables:
            return None
        elif not {"meta", "requests"} <= tables:
            raise self._damaged(f"tables {', '.join(sorted(tables))}, not meta and requests")
        return dict(db.execute("SELECT name, value FROM meta"))

    def last(self) -> int:
        """The number of the newest request committed (0: none), by this process or any other."""
        with self._lock:
            self._open()
            if self.db is None:
                return 0
            with self._errors():
                return self.db.execute("SELECT coalesce(max(seq), 0) FROM requests").fetchone()[0]

    def rows(
        self, after: int, before: int | None = None
    ) -> list[tuple[int, list[dict[str, str]], np.ndarray]]:
        """(number, items, their vectors) of the requests committed after request `after` (and before
        `before`), in order; a damaged one is refused in one line."""
        with self._lock:
            self._open()
            if self.db is None:
                return []
            with self._errors():
                found = self.db.execute(
                    "SELECT seq, items, vectors FROM requests WHERE seq > ? AND seq < ? ORDER BY seq",
                    (after, before if before is not None else 2**63 - 1),
                ).fetchall()
        return [(seq, *self._read(seq, items, vectors)) for seq, items, vectors in found]

    def append(self, items: list[dict[str, str]], vectors: np.ndarray) -> int:
        """Commits one request's items and vectors; durable when this returns its number."""
        blob = np.ascontiguousarray(vectors, dtype="<f4").tobytes()
        with self._lock, self._errors():
            cursor = self.db.execute(
                "INSERT INTO requests (items, vectors) VALUES (?, ?)",
                (json.dumps(items, ensure_ascii=False), blob),
            )
            return cursor.lastrowid

    def _read(self, seq: int, text: str, blob: bytes) -> tuple[list[dict[str, str]], np.ndarray]:
        try:
            items = json.loads(text)
        except ValueError as e:
            raise self._damaged(f"request {seq}: its items are not JSON ({e})", seq) from None
        if not (
            isinstance(items, list)
            and all(
                isinstance(item, dict)
                and isinstance(item.get("id"), str)
                and all(isinstance(v, str) for v in item.values())
                for item in items
            )
        ):
            raise self._damaged(f"request {seq}: not a list of items, objects of strings with an id", seq)
        if not isinstance(blob, bytes) or len(blob) != len(items) * self.dim * 4:
            size = len(blob) if isinstance(blob, bytes) else type(blob).__name__
            raise self._damaged(
                f"request {seq}: vectors of {size} bytes for {len(items)} items of {self.dim} floats", seq
            )
        return items, np.frombuffer(blob, dtype="<f4").reshape(len(items), self.dim).astype(np.float32)

    def _damaged(self, why: str, seq: int | None = None) -> OncerecError:
        fix = (
            f"restore the file, or delete that request (`sqlite3 {self.path} 'DELETE FROM requests WHERE seq = "
            f"{seq}'`: its items are lost)"
            if seq is not None
            else "restore the file, or remove it (its items are lost)"
        )
        return OncerecError(f"{self.path}: damaged added items ({why}); {fix}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as e:
            raise self._failure(e) from None

    def _failure(self, e: sqlite3.DatabaseError) -> OncerecError:
        """SQLite's failures as one line naming the store."""
        name = getattr(e, "sqlite_errorname", "")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return OncerecError(
                f"{self.path} is locked: another process held it for over {LOCK_WAIT_S:g} s; try again"
            )
        if name.startswith("SQLITE_READONLY"):
            return OncerecError(
                f"{self.path} is read-only: SQLite writes it only where it may write {STORE}-wal and -shm "
                "beside it; make the folder writable, or give --added-dir another folder"
            )
        return self._damaged(str(e))
