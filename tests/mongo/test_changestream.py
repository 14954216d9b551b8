"""MongoChangeStreamSource against a real wire-protocol server with change streams."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from etlsync.connectors.mongo import (
    ChangeStreamHistoryLost,
    ChangeStreamInvalidated,
    MongoChangeStreamSource,
)
from etlsync.core.batch import Batch, Op
from etlsync.core.checkpoint import Checkpoint, MemoryCheckpointStore
from etlsync.core.errors import ServiceNotReady, StageError
from etlsync.core.pipeline import Pipeline
from tests.mongo.support import KeyedSink

pytestmark = pytest.mark.integration

FAST: dict[str, Any] = {"idle_timeout": 0.5, "max_await_ms": 100, "heartbeat_seconds": 0.2}


async def _read_while(source: MongoChangeStreamSource, position: Any,
                      writes: Any) -> list[Batch]:
    """Read from ``position`` while ``writes()`` runs, until the stream is idle."""
    out: list[Batch] = []

    async def consume() -> None:
        async for b in source.read(position):
            out.append(b)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)  # the stream is open (its start position is the first batch)
    await writes()
    await task
    return out


def _changes(batches: list[Batch]) -> list[tuple[str, Op, Any]]:
    return [(b.stream, op, row.get("_id")) for b in batches for op, row in b.iter_changes()]


async def test_collection_stream_delivers_all_event_kinds(mongo_uri: str, mongo_db: Any) -> None:
    coll = mongo_db.c

    async def writes() -> None:
        await coll.insert_one({"_id": 1, "a": {"b": 1}})
        await coll.update_one({"_id": 1}, {"$set": {"a.b": 2}})
        await coll.replace_one({"_id": 1}, {"x": "y"})
        await coll.insert_one({"_id": 2})
        await coll.delete_one({"_id": 2})

    src = MongoChangeStreamSource(mongo_uri, database=mongo_db.name, collections="c",
                                  flatten="dotted", **FAST)
    batches = await _read_while(src, None, writes)
    assert batches[0].rows == [] and batches[0].position["phase"] == "stream"
    rows = [(op, row) for b in batches for op, row in b.iter_changes()]
    assert rows == [
        (Op.INSERT, {"_id": 1, "a.b": 1}),
        (Op.UPDATE, {"_id": 1, "x": "y"}),  # updateLookup: the document as it is now
        (Op.UPDATE, {"_id": 1, "x": "y"}),
        (Op.INSERT, {"_id": 2}),
        (Op.DELETE, {"_id": 2}),
    ] or rows == [
        (Op.INSERT, {"_id": 1, "a.b": 1}),
        (Op.UPDATE, {"_id": 1, "a.b": 2}),
        (Op.UPDATE, {"_id": 1, "x": "y"}),
        (Op.INSERT, {"_id": 2}),
        (Op.DELETE, {"_id": 2}),
    ]
    assert all(b.position["resume"]["_data"] for b in batches)


async def test_update_descriptions_without_lookup_give_partial_rows(
        mongo_uri: str, mongo_db: Any) -> None:
    async def writes() -> None:
        await mongo_db.c.insert_one({"_id": 1, "a": 1, "b": {"c": 1}, "gone": 1})
        await mongo_db.c.update_one({"_id": 1}, {"$set": {"b.c": 5}, "$unset": {"gone": 1}})

    src = MongoChangeStreamSource(mongo_uri, database=mongo_db.name, collections=["c"],
                                  full_document=None, metadata=True, **FAST)
    batches = await _read_while(src, None, writes)
    ops = [(op, row) for b in batches for op, row in b.iter_changes()]
    assert [op for op, _ in ops] == [Op.INSERT, Op.UPDATE]
    upd = ops[1][1]
    assert upd["_id"] == 1 and upd["b.c"] == 5 and upd["gone"] is None and "a" not in upd
    assert upd["_etl_op"] == "update" and '"b.c":5' in upd["_etl_updated"]


async def test_database_and_deployment_streams_name_streams(
        mongo_uri: str, mongo_db: Any) -> None:
    n = [0]

    async def writes() -> None:
        n[0] += 10
        await mongo_db.x.insert_one({"_id": n[0] + 1})
        await mongo_db.y.insert_one({"_id": n[0] + 2})

    db_src = MongoChangeStreamSource(mongo_uri, database=mongo_db.name, **FAST)
    assert _changes(await _read_while(db_src, None, writes)) == [
        ("x", Op.INSERT, 11), ("y", Op.INSERT, 12)]
    all_src = MongoChangeStreamSource(mongo_uri, **FAST)
    seen = _changes(await _read_while(all_src, None, writes))
    mine = [c for c in seen if c[0].startswith(mongo_db.name + ".")]
    assert mine == [(f"{mongo_db.name}.x", Op.INSERT, 21), (f"{mongo_db.name}.y", Op.INSERT, 22)]
    two = MongoChangeStreamSource(mongo_uri, collections=[f"{mongo_db.name}.y"], **FAST)
    assert _changes(await _read_while(two, None, writes)) == [("y", Op.INSERT, 32)]


async def test_resume_from_committed_token_delivers_exactly_the_rest(
        mongo_uri: str, mongo_db: Any) -> None:
    store = MemoryCheckpointStore()
    src = MongoChangeStreamSource(mongo_uri, database=mongo_db.name, collections="c",
                                  batch_size=10, **FAST)
    sink = KeyedSink()

    async def run_with(writes: Any) -> None:
        task = asyncio.create_task(Pipeline(src, [], sink, name="cs", checkpoint_store=store)
                                   .run(handle_signals=False))
        await asyncio.sleep(0.4)
        await writes()
        await task

    async def first() -> None:
        await mongo_db.c.insert_many([{"_id": i} for i in range(25)])

    await run_with(first)
    committed = await store.load("cs")
    assert committed is not None and committed.position["phase"] == "stream"
    # changes while the pipeline is down arrive on the next run, nothing twice
    await mongo_db.c.insert_many([{"_id": i} for i in range(25, 40)])
    await mongo_db.c.delete_many({"_id": {"$lt": 5}})

    async def nothing() -> None:
        return None

    n_before = len(sink.ops)
    await run_with(nothing)
    later = sink.ops[n_before:]
    assert [c[2] for c in later if c[1] is Op.INSERT] == list(range(25, 40))
    assert sorted(c[2] for c in later if c[1] is Op.DELETE) == list(range(5))
    assert set(sink.table("c")) == set(range(5, 40))


async def test_snapshot_then_stream_has_no_gap_under_concurrent_writes(
        mongo_uri: str, mongo_db: Any) -> None:
    await mongo_db.c.insert_many([{"_id": i, "v": 0} for i in range(600)])
    sink = KeyedSink()
    src = MongoChangeStreamSource(mongo_uri, database=mongo_db.name, collections="c",
                                  snapshot=True, snapshot_chunk_size=50, **FAST)
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set() and i < 300:
            await mongo_db.c.update_one({"_id": i % 600}, {"$inc": {"v": 1}})
            await mongo_db.c.insert_one({"_id": 1000 + i, "v": 1})
            await mongo_db.c.delete_one({"_id": 599 - i})
            i += 1
            await asyncio.sleep(0)

    wtask = asyncio.create_task(writer())
    run = asyncio.create_task(Pipeline(src, [], sink, name="snap").run(handle_signals=False))
    await asyncio.sleep(1.0)
    stop.set()
    await wtask
    await run
    phases = [b.position["phase"] for b in sink.batches if b.position]
    assert phases[0] == "snapshot" and phases[-1] == "stream"
    expected = {d["_id"]: d async for d in mongo_db.c.find()}
    assert sink.table("c") == expected


async def test_history_lost_is_a_clear_error_and_resnapshot_recovers(
        small_oplog_uri: str, unique_name: str) -> None:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(small_oplog_uri)
    coll = client[unique_name].c
    try:
        await coll.insert_many([{"_id": i} for i in range(10)])
        src = MongoChangeStreamSource(small_oplog_uri, database=unique_name, collections="c",
                                      **FAST)
        start = await _start_position(src)
        for i in range(10, 700, 50):
            await coll.insert_many([{"_id": j} for j in range(i, i + 50)])
        await coll.delete_many({"_id": {"$lt": 5}})
        await client.admin.command({"secantusAdmin.pruneOplog": 1})
        with pytest.raises(ChangeStreamHistoryLost, match="on_history_lost"):
            async for _ in src.read(start):
                pass
        sink = KeyedSink()
        sink.tables["c"] = {0: {"_id": 0}, 3: {"_id": 3}}  # stale rows deleted in the gap
        store = MemoryCheckpointStore()
        await store.commit("lost", Checkpoint(start))
        healing = MongoChangeStreamSource(small_oplog_uri, database=unique_name,
                                          collections="c", on_history_lost="truncate_resnapshot",
                                          **FAST)
        await Pipeline(healing, [], sink, name="lost", checkpoint_store=store).run(
            handle_signals=False)
        assert set(sink.table("c")) == set(range(5, 710))
    finally:
        await client.drop_database(unique_name)
        await client.close()


async def _start_position(src: MongoChangeStreamSource) -> Any:
    agen = src.read(None)
    try:
        return (await anext(agen)).position
    finally:
        await agen.aclose()  # type: ignore[attr-defined]


async def test_drop_raises_or_truncates(mongo_uri: str, mongo_db: Any) -> None:
    async def writes() -> None:
        await mongo_db.c.insert_one({"_id": 1})
        await mongo_db.c.drop()
        await mongo_db.c.insert_one({"_id": 2})

    src = MongoChangeStreamSource(mongo_uri, database=mongo_db.name, collections="c", **FAST)
    with pytest.raises(ChangeStreamInvalidated, match="dropped"):
        await _read_while(src, None, writes)
    src = MongoChangeStreamSource(mongo_uri, database=mongo_db.name, collections="c",
                                  on_drop="truncate", **FAST)
    await mongo_db.c.drop()
    assert _changes(await _read_while(src, None, writes)) == [
        ("c", Op.INSERT, 1), ("c", Op.TRUNCATE, None), ("c", Op.INSERT, 2)]


async def test_pipeline_surfaces_invalidation_as_stage_error(
        mongo_uri: str, mongo_db: Any) -> None:
    src = MongoChangeStreamSource(mongo_uri, database=mongo_db.name, **FAST)
    task = asyncio.create_task(Pipeline(src, [], KeyedSink(), name="inv")
                               .run(handle_signals=False))
    await asyncio.sleep(0.4)
    await mongo_db.c.insert_one({"_id": 1})
    await mongo_db.client.drop_database(mongo_db.name)
    with pytest.raises(StageError, match="dropped"):
        await task


async def test_standalone_server_is_a_clear_service_not_ready(
        tmp_path: Any, mongo_uri: str) -> None:
    from tests.support.mongo import start_server, stop_server

    proc, uri, err = start_server(tmp_path, "--standalone")
    assert proc is not None, err
    try:
        src = MongoChangeStreamSource(uri, database="d", collections="c", **FAST)
        with pytest.raises(ServiceNotReady, match="replica set"):
            async for _ in src.read(None):
                pass
    finally:
        stop_server(proc)
