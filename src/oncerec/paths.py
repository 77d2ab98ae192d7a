"""Where oncerec keeps what it builds once and reuses: prepared datasets, demo data, converted models, DIRE
caches. `$ONCEREC_CACHE` moves all of it (default `~/.cache/oncerec`)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from oncerec.errors import OncerecError


def cache_root() -> Path:
    root = Path(os.environ.get("ONCEREC_CACHE", Path.home() / ".cache" / "oncerec"))
    if root.exists() and not root.is_dir():
        raise OncerecError(f"ONCEREC_CACHE={root} is a file; point it at a folder (created if missing)")
    return root


def check_new_dir(out: Path, option: str) -> None:
    """`out` is where a command will create a folder: refuse a file or a non-empty folder (never overwrite),
    and a place it cannot be made (it is written beside, then renamed)."""
    if out.exists() and not out.is_dir():
        raise OncerecError(f"{option} {out} is a file; give a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise OncerecError(f"{option} {out} already exists and is not empty; remove it or choose another")
    check_writable(out.parent, f"{option} {out}")


def existing_folder(path: Path, what: str) -> Path:
    """The nearest existing folder of `path`: itself, or the one it would be made in; refused when that is a
    file (`path` is a file or lies under one)."""
    path = Path(path).absolute()
    above = next(p for p in (path, *path.parents) if p.exists())
    if not above.is_dir():
        raise OncerecError(f"{what}: {above} is a file, not a folder; give another path")
    return above


def check_writable(folder: Path, what: str, fix: str = "give a folder on a writable disk") -> None:
    """Refuses a folder a command will write in (making it if missing) when it cannot: one that is or lies
    under a file, or whose nearest existing folder is read-only (as `os.access` says: root may write in
    any)."""
    above = existing_folder(folder, what)
    if not os.access(above, os.W_OK):
        raise OncerecError(f"{what}: {above} is read-only; {fix}")


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


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename: a reader (or a kill) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
