"""Where oncerec keeps what it builds once and reuses: prepared datasets, demo data, converted models, DIRE
caches. `$ONCEREC_CACHE` moves all of it (default `~/.cache/oncerec`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("ONCEREC_CACHE", Path.home() / ".cache" / "oncerec"))


def publish_dir(tmp: Path, out: Path, marker: str) -> None:
    """Move the finished folder `tmp` to `out` in one rename, so that `out` is complete or absent.

    What oncerec builds into its cache is deterministic, so two processes may build the same folder at the
    same time (two first runs of the demo): when the other one published first (`out/marker` exists), its
    folder is as good as ours and ours is dropped. An empty `out` is replaced; anything else is an error."""
    try:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        os.replace(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / marker).is_file():
            raise
