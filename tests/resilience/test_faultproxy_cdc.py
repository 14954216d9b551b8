"""PostgreSQL CDC through a fault-injecting proxy: the source reconnects and resumes, and the
target holds every change exactly once."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from etlsync import Pipeline
from etlsync.resilience import ResilientSource, RetryPolicy
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

TXS, PER_TX = 120, 100


async def test_cdc_through_faulty_network_delivers_every_change_once(
        pg_dsn: str, unique_name: str) -> None:
    import asyncpg

    from etlsync.connectors.postgres import PostgresCheckpointStore, PostgresSink
    from etlsync.connectors.postgres.cdc import PostgresCdcSource

    src, dst, state = unique_name, f"{unique_name}_dst", f"{unique_name}_state"
    slot, pub = f"{unique_name}_slot", f"{unique_name}_pub"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(f'create table "{src}" (id bigint primary key, v text)')
    await admin.execute(f'create table "{dst}" (id bigint primary key, v text)')
    proxy = FaultProxy(5432, seed=5, max_cuts=12, max_delay=0.01, max_delays=300)
    task: asyncio.Task[object] | None = None
    try:
        async with proxy:
            cdc = PostgresCdcSource(proxy.dsn(pg_dsn), slot=slot, publication=pub,
                                    tables=[src], snapshot="never", status_interval=0.2,
                                    batch_rows=40)
            source = ResilientSource(cdc, retry=RetryPolicy(
                max_attempts=None, base_delay=0.05, max_delay=0.5, max_elapsed=60))
            store = PostgresCheckpointStore(pg_dsn, table=state)
            sink = PostgresSink(pg_dsn, table=dst, state_table=state, create=False)
            pipeline = Pipeline(source, sinks=[sink], name=unique_name, checkpoint_store=store)
            task = asyncio.create_task(pipeline.run(handle_signals=False))
            for _ in range(200):  # the slot exists once the source is streaming
                if await admin.fetchval("select active from pg_replication_slots "
                                        "where slot_name = $1", slot):
                    break
                await asyncio.sleep(0.05)
            # faults from now on: random cuts and delays, plus explicit cuts while writing
            proxy.cut_probability, proxy.delay_probability = 0.02, 0.05
            for t in range(TXS):
                async with admin.transaction():
                    await admin.executemany(
                        f'insert into "{src}" values ($1, $2)',
                        [(t * PER_TX + i, f"v{t}-{i}") for i in range(PER_TX)])
                if t % 30 == 15:
                    proxy.cut_all()
                await asyncio.sleep(0.005)
            total = TXS * PER_TX
            for _ in range(600):
                if await admin.fetchval(f'select count(*) from "{dst}"') >= total or task.done():
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # give duplicates a chance to show up
            pipeline.stop()
            await asyncio.wait_for(task, 60)
            await store.close()
        assert proxy.stats.cuts >= 4, proxy.stats
        assert source.resumes >= 2
        count = await admin.fetchval(f'select count(*) from "{dst}"')
        missing = await admin.fetchval(
            f'select count(*) from "{src}" s left join "{dst}" d using (id) '
            "where d.id is null or d.v is distinct from s.v")
        assert (count, missing) == (total, 0)
    finally:
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for _ in range(50):
            try:
                await admin.execute("select pg_drop_replication_slot(slot_name) from "
                                    "pg_replication_slots where slot_name = $1", slot)
                break
            except asyncpg.ObjectInUseError:
                await asyncio.sleep(0.1)
        await admin.execute(f'drop publication if exists "{pub}"')
        await admin.execute(f'drop table if exists "{src}", "{dst}", "{state}"')
        await admin.close()
