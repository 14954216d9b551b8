"""MongoOplogSource: tailing local.oplog.rs behind the same interface as change streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from etlsync.connectors.mongo import (
    ChangeStreamHistoryLost,
    ChangeStreamInvalidated,
    MongoOplogSource,
)
from etlsync.core.batch import Batch, Op
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.core.pipeline import Pipeline
from tests.mongo.support import KeyedSink

pytestmark = pytest.mark.integration


@pytest.fixture
async def oplog_client(oplog_uri: str) -> AsyncIterator[Any]:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(oplog_uri)
    yield client
    await client.close()


@pytest.fixture
async def oplog_db(oplog_client: Any, unique_name: str) -> AsyncIterator[Any]:
    yield oplog_client[unique_name]
    await oplog_client.drop_database(unique_name)


FAST: dict[str, Any] = {"idle_timeout": 0.5, "max_await_ms": 100, "heartbeat_seconds": 0.2}


async def _read_while(source: MongoOplogSource, position: Any, writes: Any) -> list[Batch]:
    out: list[Batch] = []

    async def consume() -> None:
        async for b in source.read(position):
            out.append(b)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    await writes()
    await task
    return out


async def test_oplog_events_with_update_lookup_and_transactions(
        oplog_uri: str, oplog_db: Any, oplog_client: Any) -> None:
    coll = oplog_db.c

    async def writes() -> None:
        await coll.insert_one({"_id": 1, "a": {"b": 1}})
        await coll.update_one({"_id": 1}, {"$set": {"a.b": 2}})
        await coll.replace_one({"_id": 1}, {"x": "y"})
        await oplog_db.other.insert_one({"_id": "ignored"})
        async with oplog_client.start_session() as s, await s.start_transaction():
            await coll.insert_one({"_id": 2}, session=s)
            await coll.insert_one({"_id": 3}, session=s)
        await coll.delete_one({"_id": 2})

    src = MongoOplogSource(oplog_uri, database=oplog_db.name, collections="c", flatten="json",
                           **FAST)
    batches = await _read_while(src, None, writes)
    rows = [(op, row) for b in batches for op, row in b.iter_changes()]
    assert rows == [
        (Op.INSERT, {"_id": 1, "a": '{"b":1}'}),
        (Op.UPDATE, {"_id": 1, "x": "y"}),  # diff update: looked up, as it is now
        (Op.UPDATE, {"_id": 1, "x": "y"}),
        (Op.INSERT, {"_id": 2}),
        (Op.INSERT, {"_id": 3}),
        (Op.DELETE, {"_id": 2}),
    ]
    assert all(b.position["kind"] == "oplog" for b in batches)


async def test_oplog_resume_delivers_exactly_the_rest_even_inside_transactions(
        oplog_uri: str, oplog_db: Any, oplog_client: Any) -> None:
    src = MongoOplogSource(oplog_uri, database=oplog_db.name, batch_size=3, **FAST)
    first = await _read_while(src, None, _noop)
    start = first[0].position
    async with oplog_client.start_session() as s, await s.start_transaction():
        await oplog_db.c.insert_many([{"_id": i} for i in range(10)], session=s)
    await oplog_db.c.insert_many([{"_id": i} for i in range(10, 14)])
    batches = [b async for b in src.read(start)]
    ids = [r["_id"] for b in batches for r in b.rows]
    assert ids == list(range(14))
    # resume from every batch boundary: exactly the rest each time
    delivered = 0
    for b in batches:
        delivered += len(b.rows)
        if b.position is None or not b.rows:
            continue
        rest = [r["_id"] for x in [y async for y in src.read(b.position)] for r in x.rows]
        assert rest == list(range(delivered, 14))


async def _noop() -> None:
    return None


async def test_oplog_snapshot_then_stream_via_pipeline(oplog_uri: str, oplog_db: Any) -> None:
    await oplog_db.c.insert_many([{"_id": i, "v": 0} for i in range(300)])
    sink = KeyedSink()
    store = MemoryCheckpointStore()
    src = MongoOplogSource(oplog_uri, database=oplog_db.name, collections=["c"], snapshot=True,
                           snapshot_chunk_size=40, **FAST)

    async def writer() -> None:
        for i in range(150):
            await oplog_db.c.update_one({"_id": i}, {"$inc": {"v": 1}})
            await oplog_db.c.delete_one({"_id": 299 - i})
            await oplog_db.c.insert_one({"_id": 1000 + i})

    w = asyncio.create_task(writer())
    await Pipeline(src, [], sink, name="o", checkpoint_store=store).run(handle_signals=False)
    await w
    await Pipeline(src, [], sink, name="o", checkpoint_store=store).run(handle_signals=False)
    expected = {d["_id"]: d async for d in oplog_db.c.find()}
    assert sink.table("c") == expected
    last = await store.load("o")
    assert last is not None and last.position["phase"] == "stream"


async def test_oplog_history_lost(small_oplog_uri: str, unique_name: str) -> None:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(small_oplog_uri)
    try:
        src = MongoOplogSource(small_oplog_uri, database=unique_name, **FAST)
        start = (await _read_while(src, None, _noop))[0].position
        for i in range(0, 700, 50):
            await client[unique_name].c.insert_many([{"_id": j} for j in range(i, i + 50)])
        await client.admin.command({"secantusAdmin.pruneOplog": 1})
        with pytest.raises(ChangeStreamHistoryLost, match=r"[Ww]ay out"):
            async for _ in src.read(start):
                pass
    finally:
        await client.drop_database(unique_name)
        await client.close()


async def test_oplog_drop_raises_or_truncates(oplog_uri: str, oplog_db: Any) -> None:
    async def writes() -> None:
        await oplog_db.c.insert_one({"_id": 1})
        await oplog_db.c.drop()
        await oplog_db.c.insert_one({"_id": 2})

    with pytest.raises(ChangeStreamInvalidated, match="dropped"):
        await _read_while(MongoOplogSource(oplog_uri, database=oplog_db.name, **FAST),
                          None, writes)
    await oplog_db.c.drop()
    src = MongoOplogSource(oplog_uri, database=oplog_db.name, on_drop="truncate", **FAST)
    ops = [(op, r.get("_id")) for b in await _read_while(src, None, writes)
           for op, r in b.iter_changes()]
    assert ops == [(Op.INSERT, 1), (Op.TRUNCATE, None), (Op.INSERT, 2)]
