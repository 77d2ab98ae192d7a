"""oncerec: content-based recommendation boosted by large language models.

The Python API (`oncerec.train`, `load_run`, `prepare`, `presets`, `make_config`) lives in `oncerec.api`; it is
imported on first use, so `import oncerec` stays cheap (no torch)."""

from __future__ import annotations

import logging
from typing import Any

# The library configures no output of its own: the command line, or the caller, decides (oncerec.logs).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"
__all__ = ["__version__", "load_run", "make_config", "prepare", "presets", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from oncerec import api

        return getattr(api, name)
    raise AttributeError(f"module 'oncerec' has no attribute {name!r}")
