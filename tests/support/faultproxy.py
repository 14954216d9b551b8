"""A fault-injecting TCP proxy for tests: cuts connections at random and delays packets.

Loopback only. Faults are bounded in count (``max_cuts``, ``max_delays``) and time
(``max_delay`` per packet), and reproducible from ``seed``::

    async with FaultProxy(5432, cut_probability=0.01, max_cuts=20) as proxy:
        dsn = proxy.dsn(pg_dsn)     # same DSN, host:port replaced by the proxy's
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    cuts: int = 0
    delays: int = 0
    delayed_seconds: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream_host:upstream_port`` with faults.

    :param cut_probability: chance that forwarding a chunk (either direction) instead
        aborts the connection (both sides get a reset).
    :param cut_interval: mean seconds between cuts of a random live connection (a timer,
        independent of traffic); ``None`` for none.
    :param delay_probability: chance a chunk waits up to ``max_delay`` seconds first.
    :param max_cuts: total cuts allowed (``None``: unbounded); ``max_delays`` likewise.
    :param refuse: accept and immediately reset connections (a dead service); can be set
        while running.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", *,
                 seed: int = 0, cut_probability: float = 0.0, cut_interval: float | None = None,
                 delay_probability: float = 0.0, max_delay: float = 0.02,
                 max_cuts: int | None = 50, max_delays: int | None = 1000,
                 refuse: bool = False) -> None:
        if upstream_host not in _LOOPBACK:
            raise ValueError("FaultProxy only forwards to loopback addresses")
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.cut_probability = cut_probability
        self.cut_interval = cut_interval
        self.delay_probability = delay_probability
        self.max_delay = max_delay
        self.max_cuts = max_cuts
        self.max_delays = max_delays
        self.refuse = refuse
        self.stats = ProxyStats()
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._live: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._chaos: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.cut_interval is not None:
            self._chaos = asyncio.create_task(self._chaos_loop())
        return self

    async def stop(self) -> None:
        if self._chaos is not None:
            self._chaos.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._chaos
        if self._server is not None:
            self._server.close()
        for pair in list(self._live):
            self._abort(pair)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def dsn(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by the proxy's."""
        parts = urlsplit(dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"{self.host}:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # -- faults ----------------------------------------------------------------------------
    def _may_cut(self) -> bool:
        return self.max_cuts is None or self.stats.cuts < self.max_cuts

    def _abort(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self._live.discard(pair)
        for w in pair:
            with contextlib.suppress(Exception):
                w.transport.abort()

    def cut_all(self) -> int:
        """Reset every live connection now (counts as cuts); return how many."""
        pairs = list(self._live)
        for pair in pairs:
            self.stats.cuts += 1
            self._abort(pair)
        return len(pairs)

    async def _chaos_loop(self) -> None:
        assert self.cut_interval is not None
        while True:
            await asyncio.sleep(self.rng.uniform(0, 2 * self.cut_interval))
            if self._live and self._may_cut():
                pair = self.rng.choice(sorted(self._live, key=id))
                self.stats.cuts += 1
                self._abort(pair)

    # -- forwarding --------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self.refuse:
                self.stats.refused += 1
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port)
            except OSError:
                writer.transport.abort()
                return
            self.stats.connections += 1
            pair = (writer, up_writer)
            self._live.add(pair)
            try:
                await asyncio.gather(self._pipe(reader, up_writer, pair, up=True),
                                     self._pipe(up_reader, writer, pair, up=False))
            finally:
                self._abort(pair)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter], *, up: bool) -> None:
        try:
            while pair in self._live:
                data = await reader.read(65536)
                if not data:
                    with contextlib.suppress(Exception):
                        writer.write_eof()
                    return
                if self.cut_probability and self._may_cut() and (
                        self.rng.random() < self.cut_probability):
                    self.stats.cuts += 1
                    self._abort(pair)
                    return
                if self.delay_probability and (
                        self.max_delays is None or self.stats.delays < self.max_delays) and (
                        self.rng.random() < self.delay_probability):
                    pause = self.rng.uniform(0, self.max_delay)
                    self.stats.delays += 1
                    self.stats.delayed_seconds += pause
                    await asyncio.sleep(pause)
                if pair not in self._live:
                    return
                writer.write(data)
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                await writer.drain()
        except (ConnectionError, OSError):
            self._abort(pair)
