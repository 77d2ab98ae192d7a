"""Optional parts of oncerec come as pip extras (pyproject.toml); a command that needs one says which."""

from __future__ import annotations

import importlib.util

from oncerec.errors import OncerecError

# extra -> {module: pip package}
EXTRAS = {
    "serve": {
        "faiss": "faiss-cpu",
        "fastapi": "fastapi",
        "uvicorn": "uvicorn",
        "httptools": "httptools",
        "uvloop": "uvloop",
        "prometheus_client": "prometheus-client",
    },
    "genre": {"openai": "openai", "aiohttp": "aiohttp"},
    "gguf": {"gguf": "gguf"},
    "plots": {"matplotlib": "matplotlib"},
    "tensorboard": {"tensorboard": "tensorboard"},
    "wandb": {"wandb": "wandb"},
}


def missing(extra: str) -> list[str]:
    """The pip packages of `extra` that are not installed."""
    return [pip for module, pip in EXTRAS[extra].items() if importlib.util.find_spec(module) is None]


def require(extra: str, what: str) -> None:
    """An error naming the extra to install when `what` (e.g. "serving") needs packages that are missing."""
    absent = missing(extra)
    if absent:
        raise OncerecError(f"{what} needs {', '.join(absent)}: pip install 'oncerec[{extra}]'")
