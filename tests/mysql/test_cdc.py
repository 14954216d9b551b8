"""MysqlCdcSource against the real server: snapshot-then-stream handover, transaction
boundaries, idle positions, reconnects after the replication connection is killed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from etlsync.connectors.mysql import MysqlCdcSource
from etlsync.core.batch import Batch, Op
from etlsync.core.checkpoint import Checkpoint, MemoryCheckpointStore
from etlsync.core.pipeline import Pipeline
from etlsync.testing import CollectingSink
from tests.mysql.helpers import execute, fetch, options

pytestmark = pytest.mark.integration


async def run_until(pipeline: Pipeline, done: Callable[[], bool], timeout: float = 30.0) -> None:
    task = asyncio.create_task(pipeline.run(handle_signals=False))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done():
            if task.done():
                await task
                raise AssertionError("pipeline ended early")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.05)
    finally:
        pipeline.stop()
        await task


def replay(batches: list[Batch]) -> dict[Any, dict[str, Any]]:
    state: dict[Any, dict[str, Any]] = {}
    for b in batches:
        for op, row in b.iter_changes():
            if op == Op.DELETE:
                state.pop(row["id"], None)
            else:
                state[row["id"]] = row
    return state


async def test_snapshot_then_stream_has_no_gap_and_no_duplicate(
        mysql_params: dict[str, Any], unique_name: str) -> None:
    opts = options(mysql_params)
    t = unique_name
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, v int)",
                  f"INSERT INTO `{t}` VALUES " + ",".join(f"({i}, 0)" for i in range(2000)))
    source = MysqlCdcSource([t], connection=opts, snapshot=True, chunk_rows=150, heartbeat=0.2)
    sink = CollectingSink()
    writer_done = asyncio.Event()

    async def writer() -> None:
        await asyncio.sleep(0.05)  # start while the snapshot runs
        for i in range(60):
            await execute(opts, f"INSERT INTO `{t}` VALUES ({10_000 + i}, 1)",
                          f"UPDATE `{t}` SET v = v + 1 WHERE id = {i * 7}",
                          f"DELETE FROM `{t}` WHERE id = {1999 - i}")
        writer_done.set()

    w = asyncio.create_task(writer())
    expected: list[dict[str, Any]] = []

    def caught_up() -> bool:
        if not writer_done.is_set():
            return False
        return replay(sink.batches) == {r["id"]: r for r in expected}

    async def refresh() -> None:
        while True:
            await writer_done.wait()
            expected[:] = await fetch(opts, f"SELECT * FROM `{t}`")
            return

    r = asyncio.create_task(refresh())
    await run_until(Pipeline(source, sinks=[sink], name=t), lambda: r.done() and caught_up())
    await w
    inserts: dict[Any, int] = {}
    for b in sink.batches:
        for op, row in b.iter_changes():
            if op == Op.INSERT:
                inserts[row["id"]] = inserts.get(row["id"], 0) + 1
    assert set(inserts.values()) == {1}  # every row arrived once: snapshot or binlog insert
    assert len(inserts) == 2060


async def test_batches_end_on_transaction_boundaries(mysql_params: dict[str, Any],
                                                     unique_name: str) -> None:
    opts = options(mysql_params)
    a, b = unique_name, unique_name + "b"
    await execute(opts, f"CREATE TABLE `{a}` (id int primary key)",
                  f"CREATE TABLE `{b}` (id int primary key)")
    source = MysqlCdcSource([a, b], connection=opts, max_batch_rows=100, heartbeat=0.2)
    sink = CollectingSink()

    async def write() -> None:
        await asyncio.sleep(0.5)
        await execute(opts, "START TRANSACTION",
                      f"INSERT INTO `{a}` VALUES (1), (2), (3)",
                      f"INSERT INTO `{b}` VALUES (1), (2), (3)", "COMMIT")

    w = asyncio.create_task(write())
    await run_until(Pipeline(source, sinks=[sink], name=a), lambda: len(sink.rows) >= 6)
    await w
    data = [x for x in sink.batches if x.rows]
    assert [(x.stream, len(x.rows)) for x in data] == [(a, 3), (b, 3)]
    assert data[0].position is None and data[1].position is not None
    # resuming from the committed boundary does not re-deliver the transaction
    again = CollectingSink()
    src2 = MysqlCdcSource([a, b], connection=opts, heartbeat=0.2)
    store2 = MemoryCheckpointStore()
    p2 = Pipeline(src2, sinks=[again], name=a + "2", checkpoint_store=store2)
    await store2.commit(p2.name, Checkpoint(data[1].position))
    await run_until(p2, lambda: len(again.batches) >= 2, timeout=10)
    assert again.rows == []


async def test_idle_positions_advance_with_foreign_writes(mysql_params: dict[str, Any],
                                                          unique_name: str) -> None:
    opts = options(mysql_params)
    mine, other = unique_name, unique_name + "x"
    await execute(opts, f"CREATE TABLE `{mine}` (id int primary key)",
                  f"CREATE TABLE `{other}` (id int primary key)")
    source = MysqlCdcSource([mine], connection=opts, heartbeat=0.2, idle_position_seconds=0.1)
    sink = CollectingSink()
    positions: list[Any] = []

    def advanced() -> bool:
        positions[:] = [x.position["binlog"] for x in sink.batches if x.position]
        return len({p["gtid"] for p in positions}) >= 2

    async def write() -> None:
        for i in range(5):
            await asyncio.sleep(0.2)
            await execute(opts, f"INSERT INTO `{other}` VALUES ({i})")

    w = asyncio.create_task(write())
    await run_until(Pipeline(source, sinks=[sink], name=mine), advanced, timeout=15)
    await w
    assert sink.rows == []
    assert all(not x.rows for x in sink.batches)


async def test_reconnect_after_kill_delivers_every_row_once(mysql_params: dict[str, Any],
                                                           unique_name: str) -> None:
    """Kill the replication connection repeatedly while the reader lags behind inside
    large transactions: it resumes from the last boundary and skips what it delivered."""
    import pymysql

    opts = options(mysql_params)
    t = unique_name
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, pad varchar(200))")
    source = MysqlCdcSource([t], connection=opts, heartbeat=0.2, max_batch_rows=250)
    sink = CollectingSink(delay=0.01)  # a slow sink: the reader lags, kills land mid-transaction
    total = 10 * 2000
    kills = 0

    async def write() -> None:
        await asyncio.sleep(0.3)
        for n in range(10):  # 2,000-row transactions (~400 kB): the reader emits 8 batches each
            values = ",".join(f"({n * 2000 + i}, REPEAT('p', 200))" for i in range(2000))
            await execute(opts, f"INSERT INTO `{t}` VALUES {values}")

    async def kill() -> None:
        nonlocal kills
        rng = random.Random(7)
        await asyncio.sleep(0.5)
        while kills < 6 and not (w.done() and len(sink.rows) >= total):
            await asyncio.sleep(0.05 + rng.random() * 0.1)
            stream = source.stream
            if stream is None or not stream.streaming or stream.conn is None:
                continue
            if source._emitted:  # client side: drop the socket inside a transaction
                stream.conn.close()
            elif kills % 2:  # server side: KILL the replication thread
                try:
                    await execute(opts, f"KILL {stream.thread_id}")
                except pymysql.err.OperationalError:  # reconnecting: the old thread is gone
                    continue
            else:
                continue
            kills += 1

    w = asyncio.create_task(write())
    k = asyncio.create_task(kill())
    await run_until(Pipeline(source, sinks=[sink], name=t),
                    lambda: k.done() and len(sink.rows) >= total, timeout=60)
    await asyncio.gather(w, k)
    ids = [r["id"] for r in sink.rows]
    assert len(ids) == len(set(ids)) == total
    assert source.reconnects >= 2 and kills >= 2
    assert source.resumed_mid_transaction >= 1, "no kill landed inside a transaction"


async def test_rotation_is_followed_and_resumes_by_file_position(
        mysql_params: dict[str, Any], unique_name: str) -> None:
    """FLUSH BINARY LOGS mid-stream: changes on both sides of the rotation arrive, and a
    reader resuming by file + position (no GTID) from a boundary after it skips nothing."""
    opts = options(mysql_params)
    t = unique_name
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key)")
    source = MysqlCdcSource([t], connection=opts, heartbeat=0.2, use_gtid=False)
    sink = CollectingSink()

    async def write() -> None:
        await asyncio.sleep(0.5)
        await execute(opts, f"INSERT INTO `{t}` VALUES (1)", "FLUSH BINARY LOGS",
                      f"INSERT INTO `{t}` VALUES (2)")

    w = asyncio.create_task(write())
    await run_until(Pipeline(source, sinks=[sink], name=t), lambda: len(sink.rows) >= 2)
    await w
    assert [r["id"] for r in sink.rows] == [1, 2]
    files = [b.position["binlog"]["file"] for b in sink.batches if b.rows]
    assert files[0] != files[1]  # the second change was read from the new file
    resume_at = next(b.position for b in sink.batches if b.rows and b.rows[0]["id"] == 1)
    again = CollectingSink()
    src2 = MysqlCdcSource([t], connection=opts, heartbeat=0.2, use_gtid=False)
    store2 = MemoryCheckpointStore()
    p2 = Pipeline(src2, sinks=[again], name=t + "r", checkpoint_store=store2)
    await store2.commit(p2.name, Checkpoint(resume_at))
    await run_until(p2, lambda: len(again.rows) >= 1, timeout=10)
    assert [r["id"] for r in again.rows] == [2]


async def test_lost_position_fails_with_a_clear_error(mysql_params: dict[str, Any]) -> None:
    import pytest

    from etlsync.core.errors import ServiceNotReady

    source = MysqlCdcSource(["x"], connection=options(mysql_params), use_gtid=False)
    agen = source.read({"phase": "stream", "binlog": {"file": "mysql-bin.999999", "pos": 4}})
    with pytest.raises(ServiceNotReady, match="clear this pipeline's checkpoint"):
        await asyncio.wait_for(agen.__anext__(), 20)
