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

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from oncerec.errors import OncerecError

SCHEMA_VERSION = 1
STATUSES = ("done", "invalid", "error")
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
    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise OncerecError(f"no response store at {self.path} (run `oncerec genre run` first)")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives the process being killed (not a power cut), and costs
            # no fsync per answer.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._create()
        self.db.execute("PRAGMA busy_timeout=10000")  # another run writing the same store: wait, do not fail
        self._check_version()

    def _create(self) -> None:
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.execute(
                """CREATE TABLE IF NOT EXISTS responses (
                    key TEXT PRIMARY KEY, task TEXT NOT NULL, target TEXT NOT NULL,
                    prompt_version TEXT NOT NULL, prompt_digest TEXT, model TEXT NOT NULL,
                    params TEXT NOT NULL, upstream TEXT, status TEXT NOT NULL, output TEXT, raw TEXT,
                    error TEXT, attempts INTEGER, tokens_in INTEGER, tokens_out INTEGER, seconds REAL,
                    created_at REAL)"""
            )
            self.db.execute("CREATE INDEX IF NOT EXISTS by_task ON responses (task, target)")

    def _check_version(self) -> None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise OncerecError(f"{self.path} is not a GENRE response store: {e}") from None
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise OncerecError(
                f"{self.path}: response store version {row and row[0]}, expected {SCHEMA_VERSION}"
            )

    def put(self, record: Record) -> None:
        record.created_at = record.created_at or time.time()
        values = asdict(record)
        values["output"] = (
            json.dumps(record.output, ensure_ascii=False) if record.output is not None else None
        )
        with self.db:  # one transaction, committed now: the answer is safe once put() returns
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
        with self.db:
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
