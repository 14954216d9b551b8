"""A per-API request budget: client-side windows plus what the API says in its headers.

Every request of one API (pages, children, retries; token requests excluded) takes a slot
from one :class:`RequestBudget` before it leaves and gives it back when its response (or
error) arrived. A request may leave only while fewer than ``call_limit`` requests are in
flight or finished less than ``period + margin`` seconds ago. Since a request reaches the
server after it left and before its response came back, no window of ``period`` seconds on
the server's clock ever holds more than ``call_limit`` arrivals, whatever the latency: the
budget is kept exactly, for a moving window and so for any fixed window too
(``fixed_window`` is enforced the same, strictest way). The API's remaining/reset headers
and a ``Retry-After`` (or a rate-limit status) pause every request of the API until the
reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping

from etlsync.connectors.http.config import Budget


class RequestBudget:
    """Admits requests within ``spec``'s limits: ``await acquire()`` before sending,
    ``release()`` once the response (or the error) is in."""

    def __init__(self, spec: Budget | None = None) -> None:
        self.spec = spec or Budget()
        self._finished: deque[float] = deque()
        self._in_flight = 0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()
        self.requests = 0
        self.waited_seconds = 0.0
        self.pauses = 0

    def _wait_for_slot(self, now: float) -> float | None:
        """Seconds to wait (0: go now; ``None``: until a request in flight finishes)."""
        spec = self.spec
        wait = max(0.0, self._paused_until - now)
        limit = spec.call_limit
        if limit is None:
            return wait
        span = spec.period + spec.margin
        done = self._finished
        while done and done[0] <= now - span:
            done.popleft()
        if self._in_flight + len(done) < limit:
            return wait
        if not done:
            return None
        return max(wait, done[0] + span - now)

    async def acquire(self) -> None:
        """Wait until a request may leave, and count it in flight."""
        async with self._lock:
            while True:
                now = time.monotonic()
                wait = self._wait_for_slot(now)
                if wait is not None and wait <= 0:
                    break
                self._released.clear()
                t0 = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), wait)
                self.waited_seconds += time.monotonic() - t0
            self._in_flight += 1
            self.requests += 1

    def release(self) -> None:
        """The request's response (or error) arrived."""
        self._in_flight -= 1
        if self.spec.call_limit is not None:
            self._finished.append(time.monotonic())
        self._released.set()

    def pause(self, seconds: float) -> None:
        """Hold every request of this API for ``seconds`` (a Retry-After, a reset)."""
        until = time.monotonic() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1

    def observe(self, status: int, headers: Mapping[str, str], retry_after: float | None) -> None:
        """Learn from a response: a rate-limit status or an exhausted remaining count pauses
        the API until its reset."""
        spec = self.spec
        if retry_after is not None and (status in spec.status_codes_for_ratelimit_hit
                                        or status == 503):
            self.pause(retry_after)
            return
        if spec.ratelimit_remaining_header is None:
            if status in spec.status_codes_for_ratelimit_hit:
                self.pause(spec.period)
            return
        remaining = _number(headers.get(spec.ratelimit_remaining_header))
        if remaining is None or (remaining > 0 and status not in
                                 spec.status_codes_for_ratelimit_hit):
            return
        reset = self.reset_seconds(headers)
        self.pause(reset if reset is not None else spec.period)

    def reset_seconds(self, headers: Mapping[str, str]) -> float | None:
        """Seconds until the API's window resets, from the reset header."""
        spec = self.spec
        if spec.ratelimit_reset_header is None:
            return None
        value = _number(headers.get(spec.ratelimit_reset_header))
        if value is None:
            return None
        unit = spec.reset_unit
        if unit == "milliseconds":
            return value / 1000
        if unit == "epoch_seconds":
            return value - time.time()
        if unit == "epoch_milliseconds":
            return value / 1000 - time.time()
        return value


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw.split(",")[0].strip())
    except ValueError:
        return None
