"""Time for the scheduler: the system clock, or a manual one that tests move by hand.

Everything in :mod:`etlsync.service` that reads "now" or waits for a moment goes through a
:class:`Clock`, so scheduling (cron, intervals, misfires, daylight-saving transitions, alert
folding) is tested by moving a :class:`ManualClock`, never by sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time, seconds since the epoch (UTC)."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once :meth:`now` has reached ``when`` (at once if it has)."""
        ...


class SystemClock:
    """``time.time()``; waits are re-checked at least every minute, so a wall-clock jump
    (NTP, a suspended machine) delays a fire by at most that."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        while True:
            left = when - time.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 60.0))


class ManualClock:
    """A clock that moves only when told (:meth:`advance`, :meth:`set`); sleepers whose time
    has come wake in order of their deadlines."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._ids), fut))
        await fut

    async def set(self, when: float) -> None:
        """Move to ``when`` (never backwards), waking every sleeper due by then, and let the
        woken tasks run until they wait again."""
        self._now = max(self._now, when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
        for _ in range(20):  # let woken tasks (and what they start) reach their next wait
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        await self.set(self._now + seconds)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())
