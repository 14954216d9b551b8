"""Token-bucket rate limiting in rows/s or requests/s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class TokenBucket:
    """A token bucket refilled at ``rate`` tokens per second, holding at most ``burst``.

    ``await acquire(n)`` takes ``n`` tokens, waiting until they are there. A request larger
    than ``burst`` (a big batch) is admitted by borrowing: it waits until the debt is paid,
    so the long-run rate holds for any batch size. Waiters are served in arrival order.

    :param rate: tokens per second (rows/s for a row limit, requests/s for a call limit).
    :param burst: bucket size; default one second's worth.
    """

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        if self.burst <= 0:
            raise ValueError("burst must be > 0")
        self.clock = clock
        self.sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self.acquired = 0.0
        self.waited_seconds = 0.0

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while a borrowed request is being paid off)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if available now, without waiting."""
        self._refill()
        if self._tokens >= n and not self._lock.locked():
            self._tokens -= n
            self.acquired += n
            return True
        return False

    async def acquire(self, n: float = 1.0) -> float:
        """Take ``n`` tokens, waiting as needed; return the seconds waited."""
        if n <= 0:
            return 0.0
        async with self._lock:
            self._refill()
            need = min(n, self.burst)
            waited = 0.0
            if self._tokens < need:
                waited = (need - self._tokens) / self.rate
                await self.sleep(waited)
                self._refill()
            self._tokens -= n
            if self._tokens < 0:
                # a request above burst borrows; the debt delays the next caller
                debt = -self._tokens / self.rate
                await self.sleep(debt)
                waited += debt
                self._refill()
            self.acquired += n
            self.waited_seconds += waited
            return waited
