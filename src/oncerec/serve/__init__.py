"""Serving a trained run: `export.py` (the export folder), `index.py` (FAISS), `options.py` (the command
line's choices), `ranking.py` (ranking on the inference path), `catalogue.py` (ids, new items' content),
`added.py` (the added-items store), `service.py` (the service, without HTTP), `app.py` (HTTP). The packages come
with `pip install 'oncerec[serve]'`."""

from __future__ import annotations

from oncerec.extras import missing, require


def missing_packages() -> list[str]:
    """The serving packages that are not installed (pip names)."""
    return missing("serve")


def require_packages() -> None:
    """An error naming the extra to install when a serving package is missing."""
    require("serve", "serving")
