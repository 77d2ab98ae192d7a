"""The demo world in the raw format `oncerec demo-data` writes: MIND's, or Goodreads' (drawn from a MIND folder
of the same world)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from oncerec.data.demo.generate import write_demo_mind
from oncerec.paths import check_new_dir


def write_demo_data(
    out: Path,
    fmt: str = "mind",
    scale: str = "small",
    seed: int = 0,
    fresh: float = 0.0,
    progress: bool = True,
) -> dict:
    """Writes the demo data to `out` (a new or empty folder) in `fmt` (mind | goodreads); returns its summary
    (a Goodreads folder's with its news world's dev split under `news_world`)."""
    if fmt == "mind":
        return write_demo_mind(out, scale=scale, seed=seed, progress=progress, fresh=fresh)
    from oncerec.data.formats.goodreads import write_demo_goodreads

    check_new_dir(out, "OUT")
    with tempfile.TemporaryDirectory() as tmp:
        news = write_demo_mind(Path(tmp) / "mind", scale=scale, seed=seed, progress=progress, fresh=fresh)
        return write_demo_goodreads(out, Path(tmp) / "mind", seed) | {"news_world": news["dev"]}
