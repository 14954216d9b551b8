"""Retry with exponential backoff and full jitter, driven by :func:`classify`."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from etlsync.resilience.classify import Classification, ErrorKind, classify

T = TypeVar("T")

RetryHook = Callable[[int, BaseException, Classification, float], Awaitable[None] | None]
"""Called before each retry with ``(attempt, error, classification, delay)``."""


class RetryExhausted(Exception):
    """Retries ran out (attempts or elapsed time); ``__cause__`` is the last error."""

    def __init__(self, attempts: int, elapsed: float, last: BaseException) -> None:
        self.attempts = attempts
        self.elapsed = elapsed
        self.last = last
        super().__init__(f"gave up after {attempts} attempts in {elapsed:.1f}s: "
                         f"{type(last).__name__}: {last}")


@dataclass(slots=True)
class RetryStats:
    """Counters of one policy, readable while it runs."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    gave_up: int = 0
    slept_seconds: float = 0.0
    last_error: str | None = None


@dataclass(slots=True)
class RetryPolicy:
    """Retry transient failures with exponential backoff and full jitter.

    The delay before retry ``n`` (1-based) is ``uniform(0, min(max_delay, base_delay *
    multiplier**(n-1)))`` ("full jitter"), or exactly the error's ``retry_after`` when it
    carries one (HTTP 429/503 ``Retry-After``, an open circuit), capped by what is left of
    ``max_elapsed``.

    :param max_attempts: total tries including the first; ``None`` for no limit.
    :param max_elapsed: seconds after the first try past which no retry starts; ``None``
        for no limit.
    :param retry_on: which error kinds are retried (default: transient only).
    """

    max_attempts: int | None = 8
    base_delay: float = 0.1
    max_delay: float = 30.0
    multiplier: float = 2.0
    max_elapsed: float | None = 300.0
    retry_on: frozenset[ErrorKind] = frozenset({ErrorKind.TRANSIENT})
    classifier: Callable[[BaseException], Classification] = classify
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    stats: RetryStats = field(default_factory=RetryStats)

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 (or None)")
        if self.base_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and multiplier >= 1")

    def backoff(self, retry: int) -> float:
        """The jittered delay before retry number ``retry`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * self.multiplier ** max(0, retry - 1))
        return self.rng.uniform(0.0, cap)

    def delay_for(self, retry: int, verdict: Classification) -> float:
        """The delay before retry ``retry`` given the error's classification."""
        if verdict.retry_after is not None:
            return max(0.0, verdict.retry_after)
        return self.backoff(retry)

    async def call(self, fn: Callable[[], Awaitable[T]], *,
                   on_retry: RetryHook | None = None) -> T:
        """Await ``fn()`` until it succeeds, retrying errors of the kinds in ``retry_on``.

        :raises RetryExhausted: when attempts or time ran out (``__cause__``: last error).
        :raises Exception: errors that are not retried propagate unchanged.
        """
        stats = self.stats
        stats.calls += 1
        start = self.clock()
        attempt = 0
        while True:
            attempt += 1
            stats.attempts += 1
            try:
                return await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                verdict = self.classifier(exc)
                if verdict.kind not in self.retry_on:
                    raise
                stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                elapsed = self.clock() - start
                delay = self.delay_for(attempt, verdict)
                if self.max_elapsed is not None:
                    left = self.max_elapsed - elapsed
                    if left <= 0:
                        stats.gave_up += 1
                        raise RetryExhausted(attempt, elapsed, exc) from exc
                    delay = min(delay, left)
                if self.max_attempts is not None and attempt >= self.max_attempts:
                    stats.gave_up += 1
                    raise RetryExhausted(attempt, elapsed, exc) from exc
                if on_retry is not None:
                    maybe = on_retry(attempt, exc, verdict, delay)
                    if maybe is not None:
                        await maybe
                stats.retries += 1
                stats.slept_seconds += delay
                if delay > 0:
                    await self.sleep(delay)

