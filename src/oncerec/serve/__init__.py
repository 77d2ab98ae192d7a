"""Serving a trained run: `export.py` (the export folder), `index.py` (FAISS), `service.py` (ranking, new
items), `app.py` (HTTP). The packages come with `pip install 'oncerec[serve]'`."""

from __future__ import annotations

import importlib.util

# httptools and uvloop: uvicorn runs without them, slower; the benchmark's client runs on uvloop
PACKAGES = {
    "faiss": "faiss-cpu",
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "httptools": "httptools",
    "uvloop": "uvloop",
}


def missing_packages() -> list[str]:
    """The serving packages that are not installed (pip names)."""
    return [pip for module, pip in PACKAGES.items() if importlib.util.find_spec(module) is None]


def require_packages() -> None:
    """An error naming the extra to install when a serving package is missing."""
    from oncerec.errors import OncerecError

    missing = missing_packages()
    if missing:
        raise OncerecError(f"serving needs {', '.join(missing)}: pip install 'oncerec[serve]'")
