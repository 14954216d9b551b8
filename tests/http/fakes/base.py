"""Plumbing shared by the fake APIs: a server on a free loopback port, a request budget the
server enforces and counts, and seeded fault injection.

Each fake module implements one API's documented behaviour (cited beside each handler);
this module holds only what the fakes have in common.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Enforcer:
    """The server side of a request budget: at most ``limit`` requests in any ``period``
    seconds (a moving window over arrival times). A request over it is answered 429 and
    counted in ``over_budget``: tests assert that stays 0."""

    limit: int | None = None
    period: float = 1.0
    over_budget: int = 0
    arrivals: deque[float] = field(default_factory=deque)
    requests: int = 0

    def admit(self) -> bool:
        self.requests += 1
        if self.limit is None:
            return True
        now = time.monotonic()
        while self.arrivals and self.arrivals[0] <= now - self.period:
            self.arrivals.popleft()
        if len(self.arrivals) >= self.limit:
            self.over_budget += 1
            return False
        self.arrivals.append(now)
        return True

    def remaining(self) -> int:
        if self.limit is None:
            return 1_000_000
        return max(0, self.limit - len(self.arrivals))

    def reset_in(self) -> float:
        if not self.arrivals:
            return 0.0
        return max(0.0, self.arrivals[0] + self.period - time.monotonic())


@dataclass
class Faults:
    """Seeded injected failures: ``rate`` of eligible requests get one of ``statuses``."""

    rate: float = 0.0
    statuses: tuple[int, ...] = (500, 502, 503)
    seed: int = 7
    injected: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def pick(self) -> int | None:
        if self.rate and self.rng.random() < self.rate:
            self.injected += 1
            return self.rng.choice(self.statuses)
        return None


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 on a free port; yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _write(port_file: str, url: str) -> None:
    import os

    with open(port_file + ".tmp", "w") as f:
        f.write(url)
    os.replace(port_file + ".tmp", port_file)


def run_forever(make_app: Callable[[], web.Application], port_file: str) -> None:
    """Serve ``make_app()`` until killed, writing the base URL to ``port_file`` (for tests
    that run the fake in a process of its own)."""
    async def main() -> None:
        async with serve(make_app()) as url:
            _write(port_file, url)
            await asyncio.Event().wait()

    asyncio.run(main())
