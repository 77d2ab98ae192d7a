"""Options of `oncerec genre run`, typed (`RunOptions`) and as command-line arguments (one definition for both).

Kept free of heavy imports: the CLI builds its parser from here on every start.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

from oncerec.errors import OncerecError

STORE_NAME = "genre.sqlite"  # default store: inside the dataset directory


@dataclass(frozen=True)
class TaskOptions:
    """What the tasks read besides the dataset (typed; set from `oncerec genre run` options)."""

    domain: str = ""  # news | books; empty: the dataset's (dataset.json `domain`, default news)
    prompts: str = ""  # a folder whose templates / topics.txt replace the packaged ones
    cold_max: int = 5  # generate: users with at most this many clicks (and at least one) are cold
    items_per_user: int = 1  # generate: synthetic items per cold user (one request each)
    history_titles: int = 20  # profile / generate: most recent clicks shown to the model
    chain: bool = False  # generate: profile the user first and give the profile to the generator


# the smallest value each numeric option takes (0 means "no limit" / "the default" where it is allowed)
_LOWEST = {
    "concurrency": 1,
    "rpm": 0,
    "tpm": 0,
    "max_retries": 0,
    "parse_retries": 0,
    "max_tokens": 0,
    "limit": 0,
    "price_in": 0,
    "price_out": 0,
    "batch_size": 1,
    "threads": 0,
    "abort_after": 1,
    "cold_max": 1,
    "items_per_user": 1,
    "history_titles": 1,
}


@dataclass(frozen=True)
class RunOptions:
    backend: str = ""  # openai | local; empty: openai when base_url is given, else local
    base_url: str = ""
    model: str = ""  # empty: the packaged smollm2-135m for local; required for openai
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    rpm: float = 0  # requests per minute (0: no limit)
    tpm: float = 0  # tokens per minute, prompt + completion (0: no limit)
    timeout: float = 60.0  # seconds per attempt (OpenAI backend)
    max_retries: int = 5  # transport retries per request
    parse_retries: int = 2  # new tries after an unusable answer, each showing the model its error
    retry_invalid: bool = False  # also redo requests recorded as invalid
    temperature: float = 0.0
    max_tokens: int = 0  # 0: the task's default
    json_mode: bool = False
    store: str = ""  # empty: <dataset>/genre.sqlite
    limit: int = 0  # 0: every target
    dry_run: bool = False
    price_in: float = 0.0  # USD per 1M prompt tokens, for the cost estimate
    price_out: float = 0.0  # USD per 1M completion tokens
    batch_size: int = 8  # local backend: requests generated together
    threads: int = 0  # local backend: torch threads (0: torch's default)
    abort_after: int = 20  # stop when this many requests in a row failed in transport and none succeeded
    # task options (see TaskOptions)
    domain: str = ""
    prompts: str = ""
    cold_max: int = 5
    items_per_user: int = 1
    history_titles: int = 20
    chain: bool = False

    def __post_init__(self):
        for name, low in _LOWEST.items():
            if getattr(self, name) < low:
                flag = "--" + name.replace("_", "-")
                raise OncerecError(f"{flag} {getattr(self, name)}: must be at least {low}")
        if self.timeout <= 0:
            raise OncerecError(f"--timeout {self.timeout}: must be more than 0 seconds")
        if self.prompts and not Path(self.prompts).is_dir():
            raise OncerecError(f"--prompts {self.prompts}: no such folder (it holds edited prompt templates)")

    @property
    def kind(self) -> str:
        return self.backend or ("openai" if self.base_url else "local")

    def task_options(self) -> TaskOptions:
        names = {f.name for f in fields(TaskOptions)}
        return TaskOptions(**{k: getattr(self, k) for k in names})

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> RunOptions:
        return cls(**{f.name: getattr(a, f.name) for f in fields(cls) if hasattr(a, f.name)})


def add_run_arguments(s: argparse.ArgumentParser) -> None:
    d = RunOptions()
    s.add_argument("task", choices=["summarize", "profile", "generate"])
    s.add_argument(
        "--data",
        required=True,
        help="prepared dataset directory, raw MIND folder, or data preset (demo-tiny)",
    )
    s.add_argument(
        "--backend",
        choices=["openai", "local"],
        default="",
        help="default: openai with --base-url, else local",
    )
    s.add_argument("--base-url", default="", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    s.add_argument(
        "--model",
        default="",
        help="model name at the endpoint; local: a folder or packaged name (smollm2-135m)",
    )
    s.add_argument("--api-key-env", default=d.api_key_env, help="environment variable holding the API key")
    s.add_argument("--concurrency", type=int, default=d.concurrency, help="requests in flight at once")
    s.add_argument("--rpm", type=float, default=0, help="requests per minute (0: no limit)")
    s.add_argument("--tpm", type=float, default=0, help="tokens per minute (0: no limit)")
    s.add_argument("--timeout", type=float, default=d.timeout, help="seconds per attempt")
    s.add_argument(
        "--max-retries", type=int, default=d.max_retries, help="retries on 429 / 5xx / timeouts / drops"
    )
    s.add_argument(
        "--parse-retries", type=int, default=d.parse_retries, help="retries after an unusable answer"
    )
    s.add_argument("--retry-invalid", action="store_true", help="redo requests recorded as invalid answers")
    s.add_argument(
        "--abort-after",
        type=int,
        default=d.abort_after,
        help="stop when this many requests in a row failed in transport before any succeeded",
    )
    s.add_argument("--temperature", type=float, default=d.temperature)
    s.add_argument("--max-tokens", type=int, default=0, help="answer length limit (default: the task's)")
    s.add_argument(
        "--json-mode", action="store_true", help='ask the endpoint for response_format "json_object"'
    )
    s.add_argument("--store", default="", help=f"response store (default: <dataset>/{STORE_NAME})")
    s.add_argument("--limit", type=int, default=0, help="only the first N items / users")
    s.add_argument("--dry-run", action="store_true", help="print requests, tokens and cost; call nothing")
    s.add_argument("--price-in", type=float, default=0.0, help="USD per 1M prompt tokens (cost estimate)")
    s.add_argument("--price-out", type=float, default=0.0, help="USD per 1M completion tokens")
    s.add_argument("--batch-size", type=int, default=d.batch_size, help="local backend: batch size")
    s.add_argument("--threads", type=int, default=0, help="local backend: torch threads (0: default)")
    s.add_argument("--domain", choices=["news", "books"], default="", help="default: the dataset's (news)")
    s.add_argument("--prompts", default="", help="folder with edited prompt templates / topics.txt")
    s.add_argument("--cold-max", type=int, default=d.cold_max, help="generate: at most this many clicks")
    s.add_argument(
        "--items-per-user", type=int, default=d.items_per_user, help="generate: items per cold user"
    )
    s.add_argument("--history-titles", type=int, default=d.history_titles, help="clicks shown to the model")
    s.add_argument("--chain", action="store_true", help="generate: profile each user first, give the profile")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
