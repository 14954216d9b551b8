"""Initial snapshot to stream handover, re-snapshot beside the stream, and WAL retention."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import asyncpg
import pytest

from etlsync.connectors.postgres.cdc import PostgresCdcSource
from etlsync.connectors.postgres.replication.slots import slot_info, wal_retained
from etlsync.core.batch import Batch, Op
from etlsync.core.pipeline import Pipeline
from etlsync.testing import CollectingSink
from tests.postgres_cdc.conftest import Names, apply, take, wait_streaming

pytestmark = pytest.mark.integration

SENTINEL = -1


async def _writer(dsn: str, table: str, stop: asyncio.Event, seed: int, start_id: int) -> int:
    """Random inserts, updates and deletes until ``stop``; then the sentinel row."""
    rnd = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    next_id, n = start_id, 0
    try:
        while not stop.is_set() or n < 20:
            async with conn.transaction():
                for _ in range(rnd.randint(1, 5)):
                    r = rnd.random()
                    k = rnd.randint(1, next_id)
                    if r < 0.4:
                        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", next_id,
                                           f"new{n}")
                        next_id += 1
                    elif r < 0.8:
                        await conn.execute(f"UPDATE {table} SET v = $2 WHERE id = $1", k, f"u{n}")
                    else:
                        await conn.execute(f"DELETE FROM {table} WHERE id = $1", k)
            n += 1
            await asyncio.sleep(0)
        await conn.execute(f"INSERT INTO {table} VALUES ($1, 'end')", SENTINEL)
    finally:
        await conn.close()
    return n


async def _source_rows(pg: asyncpg.Connection, table: str) -> dict[Any, dict[str, Any]]:
    return {(r["id"],): dict(r.items()) for r in await pg.fetch(f"SELECT * FROM {table}")}


def _strict_apply(state: dict[Any, dict[str, Any]], batches: list[Batch]) -> None:
    """Apply with the exact-delivery rules: an insert of a present key is a duplicate; an
    update or delete of an absent key is a gap."""
    for b in batches:
        for op, row in b.iter_changes():
            k = (row["id"],)
            if op is Op.INSERT:
                assert k not in state, f"duplicate insert of {k}"
                state[k] = dict(row)
            elif op is Op.UPDATE:
                assert k in state, f"update of {k} that was never delivered"
                state[k] = dict(row)
            elif op is Op.DELETE:
                assert k in state, f"delete of {k} that was never delivered"
                del state[k]


async def test_snapshot_hands_over_to_stream_without_gap_or_duplicate(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    await pg.execute(f"INSERT INTO {t} SELECT g, 'init' FROM generate_series(1, 20000) g")
    src = PostgresCdcSource(pg_dsn, slot=names.slot, publication=names.publication, tables=[t],
                            snapshot_chunk_rows=1000, status_interval=0.5)
    agen = src.read(None)
    first = await take(agen, lambda g: len(g) >= 1)
    stop = asyncio.Event()
    writer = asyncio.ensure_future(_writer(pg_dsn, t, stop, seed=1, start_id=20001))
    batches = list(first)
    # read the snapshot slowly so the writer changes rows before and after each chunk
    while not (batches[-1].position and set(batches[-1].position) == {"lsn"}):
        batches.append(await asyncio.wait_for(agen.__anext__(), 20))
        await asyncio.sleep(0.02)
    stop.set()
    n_tx = await writer

    def seen_sentinel(got: list[Batch]) -> bool:
        return any(r.get("id") == SENTINEL for b in got for r in b.rows)

    batches += await take(agen, seen_sentinel, timeout=60)
    await agen.aclose()
    snapshot = [b for b in batches if b.position and "snapshot" in b.position]
    assert sum(len(b.rows) for b in snapshot) == 20000  # the snapshot is as of the slot
    state: dict[Any, dict[str, Any]] = {}
    _strict_apply(state, batches)
    assert n_tx >= 20
    assert state == await _source_rows(pg, t)


async def test_resnapshot_while_streaming_converges(pg: asyncpg.Connection, names: Names,
                                                    pg_dsn: str) -> None:
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    await pg.execute(f"INSERT INTO {t} SELECT g, 'init' FROM generate_series(1, 3000) g")
    src = PostgresCdcSource(pg_dsn, slot=names.slot, publication=names.publication, tables=[t],
                            snapshot="never", snapshot_chunk_rows=400, status_interval=0.2)
    batches: list[Batch] = []

    async def consume() -> None:
        async for b in src.read(None):
            batches.append(b)
            await asyncio.sleep(0.005)

    reader = asyncio.ensure_future(consume())
    await wait_streaming(pg, names.slot)
    assert not any(b.rows for b in batches)  # snapshot="never": nothing copied
    src.request_snapshot(t)  # e.g. the target lost the table: copy it beside the stream
    stop = asyncio.Event()
    writer = asyncio.ensure_future(_writer(pg_dsn, t, stop, seed=2, start_id=3001))
    for _ in range(1200):
        await asyncio.sleep(0.05)
        if not src.resnapshot_active:
            break
    stop.set()
    await writer
    for _ in range(400):
        if any(r.get("id") == SENTINEL for b in batches for r in b.rows):
            break
        await asyncio.sleep(0.05)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    copied = [b for b in batches if b.rows and b.ops is None]
    assert len(copied) >= 3000 // 400
    marks = [b.position["resnap"]["after"] for b in batches
             if b.position and "resnap" in b.position and b.position["resnap"]["after"]]
    assert marks and marks == sorted(marks)  # resumable progress in key order
    state: dict[Any, dict[str, Any]] = {}
    apply(state, batches, ("id",))
    assert state == await _source_rows(pg, t)


async def test_idle_slot_does_not_retain_wal(pg: asyncpg.Connection, names: Names,
                                             pg_dsn: str) -> None:
    t, other = names.table, names.table + "_other"
    names.tables.append(other)
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    await pg.execute(f"CREATE TABLE {other} (id int, pad text)")
    src = PostgresCdcSource(pg_dsn, slot=names.slot, publication=names.publication, tables=[t],
                            snapshot="never", heartbeat_interval=0.3, status_interval=0.3)
    pipe = Pipeline(src, sinks=[CollectingSink()], name=names.table)
    run = asyncio.ensure_future(pipe.run(handle_signals=False))
    for _ in range(100):
        if await slot_info(pg, names.slot) is not None:
            break
        await asyncio.sleep(0.1)
    start = await pg.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    for _ in range(10):  # ~10 MB of WAL in a table the slot does not publish
        await pg.execute(f"INSERT INTO {other} SELECT g, repeat('x', 900) "
                         "FROM generate_series(1, 10000) g")
    written = int(await pg.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn") - start)
    await pg.execute("CHECKPOINT")  # logs running xacts: a point the slot may restart from
    await pg.execute(f"INSERT INTO {other} VALUES (0, '')")
    retained = written
    for _ in range(100):
        await asyncio.sleep(0.1)
        retained = await wal_retained(pg, names.slot)
        if retained < written // 4:
            break
    pipe.stop()
    await asyncio.wait_for(run, 20)
    info = await slot_info(pg, names.slot)
    assert info is not None and (info.confirmed_flush_lsn or 0) > start
    assert written > 5_000_000
    assert retained < written // 4, (retained, written)
