"""Where oncerec's messages go: what a step read or built, where a run is, its warnings.

Every module logs to `logging.getLogger(__name__)`, a child of the `oncerec` logger, which holds a NullHandler
(the library convention: the application decides; `oncerec/__init__.py` adds it). The command line shows the
messages with `printed`, one plain line each on stdout (a warning as `warning: ...`); the Python API does the
same where its caller configured no logging of their own (`default_output`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

NAME = "oncerec"


class LineFormatter(logging.Formatter):
    """The message alone; a warning (or worse) after its level: `warning: ...`."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return line if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {line}"


@contextmanager
def printed(name: str = NAME) -> Iterator[None]:
    """While inside, the messages of the logger `name` (and its children) of INFO and above are printed on
    stdout, one plain line each."""
    logger = logging.getLogger(name)
    handler = logging.StreamHandler(sys.stdout)  # the stdout of now: a test's capture, a notebook's cell
    handler.setFormatter(LineFormatter())
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


def configured() -> bool:
    """Whether the caller configured logging: a handler of their own on the `oncerec` logger or on the root."""
    own = [h for h in logging.getLogger(NAME).handlers if not isinstance(h, logging.NullHandler)]
    return bool(own or logging.getLogger().handlers)


@contextmanager
def default_output() -> Iterator[None]:
    """The Python API's messages: printed as the command line shows them where the caller configured no
    logging, else left to the caller's handlers."""
    if configured():
        yield
        return
    with printed():
        yield


@contextmanager
def muted() -> Iterator[None]:
    """While inside, oncerec logs nothing (a saved run opened again: what rebuilding its dataset or cache
    says was said when it was trained)."""
    logger = logging.getLogger(NAME)
    before = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(before)


def main_process_only(is_main: bool) -> None:
    """Under `accelerate launch` the other processes stay silent: their lines would repeat the main one's."""
    if not is_main:
        logging.getLogger(NAME).setLevel(logging.CRITICAL + 1)
