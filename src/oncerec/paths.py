"""Where oncerec keeps what it builds once and reuses: prepared datasets, demo data, converted models, DIRE
caches. `$ONCEREC_CACHE` moves all of it (default `~/.cache/oncerec`)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("ONCEREC_CACHE", Path.home() / ".cache" / "oncerec"))
