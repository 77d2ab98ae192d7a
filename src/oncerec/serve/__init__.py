"""Serving a trained run: `export.py` (the export folder), `index.py` (FAISS), `service.py` (ranking, new
items), `app.py` (HTTP). The packages come with `pip install 'oncerec[serve]'`."""

from __future__ import annotations

import importlib.util

PACKAGES = {"faiss": "faiss-cpu", "fastapi": "fastapi", "uvicorn": "uvicorn"}


def missing_packages() -> list[str]:
    """The serving packages that are not installed (pip names)."""
    return [pip for module, pip in PACKAGES.items() if importlib.util.find_spec(module) is None]
