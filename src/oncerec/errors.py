"""Errors a user can act on. The CLI prints them without a traceback."""

from __future__ import annotations

from pathlib import Path


class OncerecError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in oncerec."""


class ConfigError(OncerecError):
    pass


class DataError(OncerecError):
    """Bad raw data. Names the file, the 1-based line number (or, in a table such as Parquet, the 1-based row)
    and what was expected there."""

    def __init__(
        self,
        path: str | Path,
        message: str,
        line: int | None = None,
        field: str | None = None,
        row: int | None = None,
    ):
        self.path = str(path)
        self.line = line
        self.row = row
        self.field = field
        where = self.path if line is None else f"{self.path}:{line}"
        if row is not None:
            where = f"{self.path}:row {row}"
        if field:
            where += f" (field {field})"
        super().__init__(f"{where}: {message}")


class CheckpointError(OncerecError):
    pass


def shown(values: list[str], most: int = 10, width: int = 100) -> str:
    """Values named in a message: the first `most`, each cut to `width` characters, and how many there are
    (an error must not echo a megabyte of input back)."""
    cut = [v if len(v) <= width else v[:width] + "…" for v in values[:most]]
    more = f" and {len(values) - most:,} more" if len(values) > most else ""
    return f"{', '.join(cut)}{more}"
