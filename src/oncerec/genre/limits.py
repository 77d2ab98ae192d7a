"""Client-side limits on LLM requests: requests and tokens per minute, a shared cool-down after a 429, and
retries with exponential backoff and jitter that honour Retry-After.

Concurrency itself is bounded by the runner (a fixed number of workers). Errors are sorted by the backends
into three kinds: `TransientError` (429, 5xx, timeouts, dropped connections: retried), `RejectedError` (this
request cannot succeed, e.g. HTTP 400: recorded, not retried) and `FatalError` (the run cannot proceed, e.g.
a wrong API key: the run stops, everything finished so far is kept).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from oncerec.errors import OncerecError

T = TypeVar("T")


class TransientError(Exception):
    """Worth retrying; `retry_after` is the server's Retry-After in seconds when it sent one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(Exception):
    """This request cannot succeed as it is (e.g. HTTP 400): recorded as an error, not retried."""


class FatalError(OncerecError):
    """The run cannot proceed (authentication, unknown model, unreachable endpoint): it stops with exit code 2."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5  # transport retries per request (so up to 1 + max_retries attempts)
    base_delay: float = 0.5  # seconds before the first retry; doubles each time
    max_delay: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After is capped (a server may ask for an hour)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Equal jitter: half the exponential delay fixed, half random, so that workers hit by the same
        failure do not come back in lockstep."""
        delay = min(self.max_delay, self.base_delay * 2**attempt)
        return delay / 2 + rng.uniform(0, delay / 2)


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class TokenBucket:
    """`per_minute` units a minute, refilled continuously, at most one second's worth at once. A request
    larger than that waits for a full bucket and leaves it in debt, so big requests are not starved."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.clock = clock
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, amount: float) -> float:
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give_back(self, amount: float) -> None:
        """Correct an estimate once the real usage is known (negative: more was used than taken)."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class Limiter:
    """Requests-per-minute and tokens-per-minute buckets shared by all workers, plus a cool-down that a
    429 with Retry-After imposes on every worker (the limit is the account's, not the request's)."""

    def __init__(self, rpm: float = 0, tpm: float = 0):
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None
        self.resume_at = 0.0
        self.lock = asyncio.Lock()  # waiters are served in arrival order

    async def acquire(self, tokens: float) -> None:
        async with self.lock:
            while True:
                wait = max(0.0, self.resume_at - time.monotonic())
                if self.requests:
                    wait = max(wait, self.requests.wait_time(1))
                if self.tokens:
                    wait = max(wait, self.tokens.wait_time(tokens))
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(tokens)

    def settle(self, estimated: float, used: float) -> None:
        if self.tokens:
            self.tokens.give_back(estimated - used)

    def cool_down(self, seconds: float) -> None:
        self.resume_at = max(self.resume_at, time.monotonic() + seconds)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    limiter: Limiter,
    tokens: float,
    timeout: float | None,
    rng: random.Random,
    on_retry: Callable[[TransientError, float], object] | None = None,
) -> tuple[T, int]:
    """(result, attempts). Each attempt waits for the limiter, then has `timeout` seconds in all (connect,
    send, the whole answer). Raises the last TransientError when the retries are used up."""
    attempt = 0
    while True:
        await limiter.acquire(tokens)
        try:
            if timeout:
                async with asyncio.timeout(timeout):
                    return await call(), attempt + 1
            return await call(), attempt + 1
        except TimeoutError:
            error = TransientError(f"no answer within {timeout:g} s")
        except TransientError as e:
            error = e
        if attempt >= policy.max_retries:
            raise error
        if error.retry_after is not None:
            wait = min(error.retry_after, policy.max_retry_after)
            limiter.cool_down(wait)
            wait += rng.uniform(0, 0.1 * wait + 0.05)  # jitter: the waiting workers do not return at once
        else:
            wait = policy.backoff(attempt, rng)
        if on_retry:
            on_retry(error, wait)
        await asyncio.sleep(wait)
        attempt += 1
