"""Multi-table CDC into one target table per source table, exactly-once, through RoutingSink."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from etlsync import Pipeline, RoutingSink
from etlsync.connectors.postgres import PostgresCdcSource, PostgresCheckpointStore, PostgresSink
from tests.postgres_cdc.conftest import Names

pytestmark = pytest.mark.integration


async def test_two_tables_stream_into_their_own_targets(
        pg_dsn: str, pg: asyncpg.Connection, names: Names) -> None:
    a, b = f"{names.table}_a", f"{names.table}_b"
    names.tables += [a, b, f"{a}_copy", f"{b}_copy"]
    for t in (a, b):
        await pg.execute(f'CREATE TABLE "{t}" (id int PRIMARY KEY, v text)')
        await pg.execute(f'INSERT INTO "{t}" SELECT g, \'snap\' FROM generate_series(1, 50) g')
    source = PostgresCdcSource(pg_dsn, slot=names.slot, publication=names.publication,
                               tables=[f"public.{a}", f"public.{b}"], status_interval=0.5)
    store = PostgresCheckpointStore(pg_dsn)

    def target(stream: str) -> PostgresSink:
        return PostgresSink(pg_dsn, table=stream.split(".")[-1] + "_copy", write_mode="upsert",
                            primary_key=["id"])

    router = RoutingSink(target, checkpoint_store=lambda: PostgresCheckpointStore(pg_dsn))
    pipeline = Pipeline(source, [], router, name=names.slot, checkpoint_store=store)
    assert pipeline.resolve_checkpoint_store()[1] == 0  # the router's children own it
    task = asyncio.create_task(pipeline.run(handle_signals=False))
    try:
        async def copied(t: str) -> list[tuple[int, str]]:
            try:
                rows = await pg.fetch(f'SELECT id, v FROM "{t}_copy" ORDER BY id')
            except asyncpg.UndefinedTableError:
                return []
            return [(r["id"], r["v"]) for r in rows]

        async def wait_for(expected_a: list[tuple[int, str]],
                           expected_b: list[tuple[int, str]]) -> None:
            for _ in range(600):
                if await copied(a) == expected_a and await copied(b) == expected_b:
                    return
                if task.done():
                    await task
                await asyncio.sleep(0.05)
            raise AssertionError((await copied(a))[:5], (await copied(b))[:5])

        snap = [(i, "snap") for i in range(1, 51)]
        await wait_for(snap, snap)
        await pg.execute(f'UPDATE "{a}" SET v = \'upd\' WHERE id <= 10')
        await pg.execute(f'DELETE FROM "{b}" WHERE id > 40')
        await pg.execute(f'INSERT INTO "{b}" VALUES (100, \'new\')')
        await wait_for([(i, "upd" if i <= 10 else "snap") for i in range(1, 51)],
                       [(i, "snap") for i in range(1, 41)] + [(100, "new")])
    finally:
        pipeline.stop()
        summary = await asyncio.wait_for(task, 60)
        await store.close()
    assert summary.status == "stopped"
    stored = await store.load(names.slot)
    assert stored is not None and stored.position == summary.committed_position
