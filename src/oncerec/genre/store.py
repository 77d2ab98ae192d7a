"""The response store: one SQLite file, one row per request key, written (and committed) as each answer arrives.

The key is a hash of (task, target id, prompt version, model, generation parameters, upstream answer), so a
re-run finds every completed request and sends only the rest, and a run killed at any point loses at most
the answers in flight. WAL mode: readers (merge, export, a dry run) never block the writer, and a killed
writer leaves the file consistent.

Statuses: `done` (a valid answer, parsed), `invalid` (the model's answers stayed unusable after the parse
retries: its last raw text and the error are kept), `error` (the request itself failed: transport errors
after all retries, or a rejected request). A re-run retries `error` rows; `invalid` rows only with
`--retry-invalid`, since the same prompt to the same model mostly gives the same answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from oncerec.errors import OncerecError
from oncerec.genre.options import STORE_NAME
from oncerec.sqlite import HEADER, connect, head

SCHEMA_VERSION = 1
TABLES = ("meta", "responses")
LOCK_WAIT_S = 10.0  # another process writing the same store: wait this long for it, then say it is locked
COLUMNS = (
    "key",
    "task",
    "target",
    "prompt_version",
    "prompt_digest",
    "model",
    "params",
    "upstream",
    "status",
    "output",
    "raw",
    "error",
    "attempts",
    "tokens_in",
    "tokens_out",
    "seconds",
    "created_at",
)


@dataclass
class Record:
    key: str
    task: str
    target: str
    prompt_version: str
    prompt_digest: str
    model: str
    params: str  # JSON of GenParams
    upstream: str
    status: str
    output: dict | None = None
    raw: str | None = None
    error: str | None = None
    attempts: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    created_at: float = 0.0

    def scrubbed(self, scrub: Callable[[str], str]) -> Record:
        """The record with `scrub` applied to every text it holds (each column, every string of the parsed
        answer), but the key, a hash."""
        values = {name: _scrub_value(value, scrub) for name, value in asdict(self).items() if name != "key"}
        return Record(key=self.key, **values)


def _scrub_value(value, scrub: Callable[[str], str]):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k): _scrub_value(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(v, scrub) for v in value]
    return value


def request_key(
    task: str, target: str, prompt_version: str, model: str, params: dict, upstream: str = ""
) -> str:
    payload = json.dumps([task, target, prompt_version, model, params, upstream], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Store:
    """A response store, opened for writing (`genre run`, `genre import`) or reading (`merge`, `export`).

    Whatever cannot be a store is refused before anything is written to it: a folder, a file that is not
    SQLite (text, Parquet, ...), an SQLite database of another application (tables other than `meta` and
    `responses`); a missing or empty file, or an SQLite file without any table, becomes a new store. A store
    another process holds locked, or one that cannot be written, is one line saying so."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path, self.readonly = Path(path), readonly
        existing = self._check_file()
        if not existing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.path, readonly, LOCK_WAIT_S)
        try:
            with self._errors():
                self._open(existing)
        except BaseException:
            self.db.close()
            raise

    def _check_file(self) -> bool:
        """Whether the file holds a database already (False: a store is to be created there)."""
        if self.path.is_dir():
            raise OncerecError(
                f"{self.path} is a folder, not a GENRE response store: give --store a file, such as "
                f"{self.path / STORE_NAME}"
            )
        if not self.path.exists() or (not self.readonly and self.path.stat().st_size == 0):
            if self.readonly:
                raise OncerecError(f"no response store at {self.path} (run `oncerec genre run` first)")
            return False
        try:
            first = head(self.path)
        except OSError as e:
            raise OncerecError(f"{self.path}: cannot read the response store ({e.strerror})") from None
        if first != HEADER:
            kind = "a Parquet file" if first.startswith(b"PAR1") else "an empty file" if not first else None
            raise self._not_a_store(kind or "not an SQLite file")
        return True

    def _open(self, existing: bool) -> None:
        tables = (
            {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if existing
            else set()
        )
        if tables and not set(TABLES) <= tables:
            raise self._not_a_store(f"an SQLite database with the tables {', '.join(sorted(tables))}")
        if self.readonly and not tables:
            raise self._not_a_store("an SQLite database without tables")
        if not self.readonly:
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives the process being killed (not a power cut), and costs
            # no fsync per answer.
            self.db.execute("PRAGMA synchronous=NORMAL")
            if not tables:
                self._create()
        self._check_version()

    def _create(self) -> None:
        # One transaction: a creation cut short leaves no table, and the next open creates the store again.
        self.db.executescript(
            f"""BEGIN;
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
            INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
            CREATE TABLE IF NOT EXISTS responses (
                key TEXT PRIMARY KEY, task TEXT NOT NULL, target TEXT NOT NULL,
                prompt_version TEXT NOT NULL, prompt_digest TEXT, model TEXT NOT NULL,
                params TEXT NOT NULL, upstream TEXT, status TEXT NOT NULL, output TEXT, raw TEXT,
                error TEXT, attempts INTEGER, tokens_in INTEGER, tokens_out INTEGER, seconds REAL,
                created_at REAL);
            CREATE INDEX IF NOT EXISTS by_task ON responses (task, target);
            COMMIT;"""
        )

    def _check_version(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        if row is None:
            raise self._not_a_store("no schema version in its `meta` table")
        if row[0] != str(SCHEMA_VERSION):
            raise OncerecError(f"{self.path}: response store version {row[0]}, expected {SCHEMA_VERSION}")

    def _not_a_store(self, what: str) -> OncerecError:
        return OncerecError(
            f"{self.path} is not a GENRE response store ({what}): give --store a new file, or a store "
            "`oncerec genre run` or `genre import` wrote"
        )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's failures that the user can act on, as one line naming the store."""
        try:
            yield
        except sqlite3.OperationalError as e:
            error = self._explain(e)
            if error is None:
                raise
            raise error from None
        except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
            raise self._not_a_store(str(e)) from None

    def _explain(self, e: sqlite3.OperationalError) -> OncerecError | None:
        name = getattr(e, "sqlite_errorname", "")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return OncerecError(
                f"{self.path} is locked: another process is writing it (waited {LOCK_WAIT_S:g} s); run "
                "again once it is done, or give --store another file"
            )
        if name.startswith("SQLITE_READONLY"):
            return OncerecError(
                f"{self.path} is read-only: SQLite {'reads' if self.readonly else 'writes'} a store in WAL "
                f"mode only where it may write {self.path.name}-wal and -shm beside it: make the file and "
                "its folder writable, or copy the store to a writable folder"
            )
        if name.startswith("SQLITE_CANTOPEN"):
            return OncerecError(f"{self.path}: cannot open the response store ({e}): check the path")
        return None

    def put(self, record: Record) -> None:
        record.created_at = record.created_at or time.time()
        values = asdict(record)
        values["output"] = (
            json.dumps(record.output, ensure_ascii=False) if record.output is not None else None
        )
        # one transaction, committed now: the answer is safe once put() returns
        with self._errors(), self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO responses ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [values[c] for c in COLUMNS],
            )

    def put_many(self, records: list[Record]) -> None:
        """Several records in one transaction: all of them are stored, or (killed midway) none."""
        now = time.time()
        rows = []
        for record in records:
            record.created_at = record.created_at or now
            values = asdict(record)
            values["output"] = (
                json.dumps(record.output, ensure_ascii=False) if record.output is not None else None
            )
            rows.append([values[c] for c in COLUMNS])
        with self._errors(), self.db:
            self.db.executemany(
                f"INSERT OR REPLACE INTO responses ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                rows,
            )

    def get_many(self, keys: list[str]) -> dict[str, Record]:
        out = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            for r in self._select(f"WHERE key IN ({', '.join('?' * len(chunk))})", tuple(chunk)):
                out[r.key] = r
        return out

    def statuses(self, keys: list[str]) -> dict[str, str]:
        out = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.db.execute(
                f"SELECT key, status FROM responses WHERE key IN ({', '.join('?' * len(chunk))})", chunk
            )
            out.update(dict(rows))
        return out

    def get(self, key: str) -> Record | None:
        rows = list(self._select("WHERE key = ?", (key,)))
        return rows[0] if rows else None

    def records(self, task: str | None = None, model: str | None = None) -> Iterator[Record]:
        where, args = [], []
        if task:
            where.append("task = ?")
            args.append(task)
        if model:
            where.append("(model = ? OR model LIKE ?)")
            args += [model, f"%:{model}"]
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(clause + " ORDER BY created_at, key", tuple(args))

    def _select(self, clause: str, args: tuple) -> Iterator[Record]:
        for row in self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM responses {clause}", args):
            values = dict(zip(COLUMNS, row, strict=True))
            values["output"] = json.loads(values["output"]) if values["output"] else None
            yield Record(**values)

    def latest(self, task: str, model: str | None = None) -> tuple[dict[str, Record], dict[str, int]]:
        """target -> its most recent `done` record (what merge uses), and, for the targets without any, the
        count by the status of their latest record (what merge falls back for)."""
        done: dict[str, Record] = {}
        last: dict[str, str] = {}
        for r in self.records(task, model):  # oldest first: later answers replace earlier ones
            last[r.target] = r.status
            if r.status == "done":
                done[r.target] = r
        failed: dict[str, int] = {}
        for target, status in last.items():
            if target not in done:
                failed[status] = failed.get(status, 0) + 1
        return done, failed

    def count(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM responses GROUP BY status"))

    def export_jsonl(self, out: str | Path) -> int:
        """Every record as one JSON line (atomically written). Returns the number of lines."""
        out = Path(out)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        n = 0
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for r in self.records():
                    record = asdict(r)
                    record["params"] = json.loads(r.params)
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    n += 1
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return n

    def close(self) -> None:
        self.db.close()
