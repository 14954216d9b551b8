"""Loads into PostgreSQL through a fault-injecting TCP proxy: every row exactly once.

Default 100k rows; ``ETLSYNC_LONG_TESTS=1`` runs the 1M-row load.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from etlsync import Batch, Pipeline
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.stages import Source
from etlsync.resilience import (
    CircuitBreaker,
    Resilient,
    ResilientCheckpointStore,
    RetryPolicy,
)
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

ROWS = 1_000_000 if os.environ.get("ETLSYNC_LONG_TESTS") == "1" else 100_000


class Counter(Source):
    """Rows ``{id, v}`` for ids ``position..n`` in batches; position = rows delivered."""

    name = "counter"

    def __init__(self, n: int, batch: int) -> None:
        self.n, self.batch = n, batch

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        start = int(position or 0)
        for lo in range(start, self.n, self.batch):
            hi = min(self.n, lo + self.batch)
            yield Batch([{"id": i, "v": f"row-{i}"} for i in range(lo, hi)], stream="t",
                        position=hi)


async def _pg(dsn: str, sql: str, *args: Any) -> Any:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def test_load_through_faulty_network_delivers_every_row_once(
        pg_dsn: str, unique_name: str) -> None:
    from etlsync.connectors.postgres import PostgresCheckpointStore, PostgresSink

    table, state = unique_name, f"{unique_name}_state"
    await _pg(pg_dsn, f'create table "{table}" (id bigint primary key, v text not null)')
    proxy = FaultProxy(5432, seed=11, cut_probability=0.01, cut_interval=0.2,
                       delay_probability=0.05, max_delay=0.01, max_cuts=40, max_delays=400)
    try:
        async with proxy:
            dsn = proxy.dsn(pg_dsn)
            retry = RetryPolicy(max_attempts=None, base_delay=0.01, max_delay=0.2,
                                max_elapsed=120)
            store = ResilientCheckpointStore(
                PostgresCheckpointStore(dsn, table=state), retry=retry)
            sink = Resilient(
                PostgresSink(dsn, table=table, state_table=state, create=False),
                retry=retry, breaker=CircuitBreaker(failure_threshold=5, reset_timeout=0.05),
                verify_with=store)
            pipeline = Pipeline(Counter(ROWS, 2000), sinks=[sink], name=unique_name,
                                checkpoint_store=store)  # type: ignore[arg-type]
            await asyncio.wait_for(pipeline.run(), 240)
            await store.close()
        assert proxy.stats.cuts >= 5, proxy.stats  # faults really happened
        assert sink.stats.reconnects >= 1
        count = await _pg(pg_dsn, f'select count(*) from "{table}"')
        distinct = await _pg(pg_dsn, f'select count(distinct id) from "{table}"')
        top = await _pg(pg_dsn, f'select max(id) from "{table}"')
        position = await _pg(pg_dsn, f'select position::text from "{state}" where pipeline = $1',
                             unique_name)
        assert (count, distinct, top) == (ROWS, ROWS, ROWS - 1)
        assert Checkpoint.decode(position).position == ROWS
    finally:
        await _pg(pg_dsn, f'drop table if exists "{table}", "{state}"')


async def test_commit_whose_reply_was_lost_is_not_written_twice(
        pg_dsn: str, unique_name: str) -> None:
    """The transaction committed but the client saw the connection drop: the retry finds
    the batch's position in the state table and does not write the batch again."""
    from etlsync.connectors.postgres import PostgresCheckpointStore, PostgresSink

    class ReplyLost(PostgresSink):
        writes = 0

        async def write(self, batch: Batch) -> None:
            await super().write(batch)
            ReplyLost.writes += 1
            if ReplyLost.writes in (3, 6):
                self.connection.terminate()
                raise ConnectionResetError("connection lost before the COMMIT reply")

    table, state = unique_name, f"{unique_name}_state"
    await _pg(pg_dsn, f'create table "{table}" (id bigint, v text)')  # no key: dups would show
    try:
        store = PostgresCheckpointStore(pg_dsn, table=state)
        sink = Resilient(ReplyLost(pg_dsn, table=table, state_table=state, create=False),
                         retry=RetryPolicy(base_delay=0.001), verify_with=store)
        await Pipeline(Counter(10_000, 1000), sinks=[sink], name=unique_name,
                       checkpoint_store=store).run()
        await store.close()
        assert sink.stats.verified_commits == 2
        assert await _pg(pg_dsn, f'select count(*) from "{table}"') == 10_000
        assert await _pg(pg_dsn, f'select count(distinct id) from "{table}"') == 10_000
    finally:
        await _pg(pg_dsn, f'drop table if exists "{table}", "{state}"')


async def test_breaker_opens_while_postgres_is_unreachable_and_closes_after(
        pg_dsn: str, unique_name: str) -> None:
    from etlsync.connectors.postgres import PostgresCheckpointStore, PostgresSink

    class Slow(Counter):
        async def read(self, position: Any | None) -> AsyncIterator[Batch]:
            async for b in super().read(position):
                await asyncio.sleep(0.01)
                yield b

    table, state = unique_name, f"{unique_name}_state"
    await _pg(pg_dsn, f'create table "{table}" (id bigint primary key, v text not null)')
    try:
        async with FaultProxy(5432) as proxy:
            # the sink's own state table, reached as the sink reaches it: the sink owns it
            store = PostgresCheckpointStore(proxy.dsn(pg_dsn), table=state)
            breaker = CircuitBreaker(failure_threshold=3, reset_timeout=0.1, name="pg")
            sink = Resilient(
                PostgresSink(proxy.dsn(pg_dsn), table=table, state_table=state, create=False),
                retry=RetryPolicy(max_attempts=None, base_delay=0.01, max_delay=0.05,
                                  max_elapsed=60),
                breaker=breaker, verify_with=store)
            pipeline = Pipeline(Slow(20_000, 500), sinks=[sink], name=unique_name,
                                checkpoint_store=store)
            task = asyncio.create_task(pipeline.run(handle_signals=False))
            while sink.stats.batches < 5:
                await asyncio.sleep(0.005)
            proxy.refuse = True  # the server "goes away": new connections are reset
            proxy.cut_all()
            states = []
            for _ in range(60):
                states.append(sink.metrics["breaker_state"])
                await asyncio.sleep(0.01)
            proxy.refuse = False
            await asyncio.wait_for(task, 60)
            await store.close()
        assert "open" in states and proxy.stats.refused >= 1
        assert breaker.stats.opened >= 1 and breaker.state.value == "closed"
        assert await _pg(pg_dsn, f'select count(*) from "{table}"') == 20_000
    finally:
        await _pg(pg_dsn, f'drop table if exists "{table}", "{state}"')
