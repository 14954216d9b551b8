"""MongoSink against a real wire-protocol server: write modes, conflict strategies, ordered
and unordered bulk writes, change ops."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync.connectors.mongo import MongoCheckpointStore, MongoSink
from etlsync.core.batch import Batch, Op
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import ConflictError, StageError
from etlsync.core.pipeline import Pipeline
from etlsync.core.stages import Operator, StageContext
from etlsync.log import get_logger
from etlsync.testing import MemorySource

pytestmark = pytest.mark.integration


async def _sink(uri: str, db: Any, **kw: Any) -> MongoSink:
    sink = MongoSink(uri, database=db.name, collection="t", **kw)
    await sink.open(StageContext("p", "sink:mongo", get_logger()))
    return sink


async def _docs(db: Any) -> dict[Any, dict[str, Any]]:
    return {d["_id"]: d async for d in db.t.find()}


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize(("conflict", "expected"), [
    ("skip", {"_id": 1, "a": 1, "b": 1}),
    ("overwrite", {"_id": 1, "a": 2}),
    ("merge", {"_id": 1, "a": 2, "b": 1}),
])
async def test_upsert_conflict_strategies(mongo_uri: str, mongo_db: Any, conflict: str,
                                          expected: dict[str, Any], ordered: bool) -> None:
    await mongo_db.t.insert_one({"_id": 1, "a": 1, "b": 1})
    sink = await _sink(mongo_uri, mongo_db, conflict=conflict, ordered=ordered)
    try:
        await sink.write(Batch([{"_id": 1, "a": 2}, {"_id": 2, "a": 3}], stream="s"))
    finally:
        await sink.close()
    assert await _docs(mongo_db) == {1: expected, 2: {"_id": 2, "a": 3}}


async def test_fail_strategy_names_the_conflicting_key(mongo_uri: str, mongo_db: Any) -> None:
    await mongo_db.t.insert_one({"_id": 7, "a": 1})
    sink = await _sink(mongo_uri, mongo_db, conflict="fail")
    try:
        with pytest.raises(ConflictError, match="7"):
            await sink.write(Batch([{"_id": 7, "a": 2}]))
    finally:
        await sink.close()
    assert (await _docs(mongo_db))[7]["a"] == 1


async def test_change_ops_apply_in_order_even_unordered(mongo_uri: str, mongo_db: Any) -> None:
    sink = await _sink(mongo_uri, mongo_db, ordered=False)
    rows = [{"_id": 1, "v": 1}, {"_id": 2, "v": 1}, {"_id": 1, "v": 2}, {"_id": 2},
            {"_id": 1, "v": 3}, {"_id": 3, "v": 1}]
    ops = [Op.INSERT, Op.INSERT, Op.UPDATE, Op.DELETE, Op.UPDATE, Op.INSERT]
    try:
        await sink.write(Batch(rows, stream="s", ops=ops))
        assert await _docs(mongo_db) == {1: {"_id": 1, "v": 3}, 3: {"_id": 3, "v": 1}}
        await sink.write(Batch([{}, {"_id": 9}], stream="s", ops=[Op.TRUNCATE, Op.INSERT]))
        assert await _docs(mongo_db) == {9: {"_id": 9}}
    finally:
        await sink.close()


async def test_append_and_overwrite_modes(mongo_uri: str, mongo_db: Any) -> None:
    await mongo_db.t.insert_one({"_id": "old"})
    sink = await _sink(mongo_uri, mongo_db, write_mode="overwrite")
    try:
        await sink.write(Batch([{"_id": "a"}]))
        await sink.write(Batch([{"_id": "b"}]))  # cleared only once per run
    finally:
        await sink.close()
    assert set(await _docs(mongo_db)) == {"a", "b"}
    sink = await _sink(mongo_uri, mongo_db, write_mode="append")
    try:
        with pytest.raises(ConflictError):
            await sink.write(Batch([{"_id": "c"}, {"_id": "a"}]))
    finally:
        await sink.close()
    assert set(await _docs(mongo_db)) == {"a", "b", "c"}


async def test_append_of_rows_without_the_key_field_gets_object_ids(mongo_uri: str,
                                                                    mongo_db: Any) -> None:
    """Appended rows (a CSV's) need no ``_id``: the server makes one. Before, every row was
    asked for its key and the append failed with 'row lacks key field _id'."""
    sink = await _sink(mongo_uri, mongo_db, write_mode="append")
    try:
        await sink.write(Batch([{"name": "a"}, {"name": "b"}]))
    finally:
        await sink.close()
    docs = list((await _docs(mongo_db)).values())
    assert sorted(d["name"] for d in docs) == ["a", "b"]
    assert all(isinstance(d["_id"], ObjectId) for d in docs)


async def test_a_custom_key_is_unique_so_fail_and_append_meet_stored_keys(
        mongo_uri: str, mongo_db: Any) -> None:
    """With ``primary_key`` other than ``_id`` the sink keeps a unique index on it: an append
    or ``conflict: fail`` of a stored key is a ConflictError, not a second document."""
    sink = await _sink(mongo_uri, mongo_db, write_mode="upsert", conflict="fail",
                       primary_key=["code"])
    try:
        await sink.write(Batch([{"code": "x", "v": 1}]))
        with pytest.raises(ConflictError, match="x"):
            await sink.write(Batch([{"code": "x", "v": 2}]))
    finally:
        await sink.close()
    assert [(d["code"], d["v"]) for d in (await _docs(mongo_db)).values()] == [("x", 1)]


async def test_unflatten_custom_key_and_object_ids(mongo_uri: str, mongo_db: Any) -> None:
    oid = ObjectId()
    sink = await _sink(mongo_uri, mongo_db, key="code", conflict="merge", unflatten=True,
                       restore_object_ids=True)
    try:
        await sink.write(Batch([{"_id": str(oid), "code": "x", "a.b": 1, "a.c": 2}]))
        await sink.write(Batch([{"code": "x", "z": 5}]))
    finally:
        await sink.close()
    doc = await mongo_db.t.find_one({"code": "x"})
    assert doc == {"_id": oid, "code": "x", "a": {"b": 1, "c": 2}, "z": 5}


_change = st.tuples(st.sampled_from([Op.INSERT, Op.UPDATE, Op.DELETE]), st.integers(0, 4),
                    st.integers(0, 99))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(_change, min_size=1, max_size=25), ordered=st.booleans())
async def test_any_change_sequence_ends_like_a_keyed_model(
        mongo_uri: str, mongo_db: Any, changes: list[tuple[Op, int, int]], ordered: bool) -> None:
    await mongo_db.t.delete_many({})
    model: dict[int, dict[str, Any]] = {}
    rows, ops = [], []
    for op, key, v in changes:
        row = {"_id": key} if op is Op.DELETE else {"_id": key, "v": v}
        rows.append(row)
        ops.append(op)
        if op is Op.DELETE:
            model.pop(key, None)
        else:
            model[key] = row
    sink = await _sink(mongo_uri, mongo_db, ordered=ordered)
    try:
        await sink.write(Batch(rows, stream="s", ops=ops))
    finally:
        await sink.close()
    assert await _docs(mongo_db) == model


class _CrashBeforeCommit(MongoCheckpointStore):
    """Loads what the sink wrote in its transactions; the runner's own commits are lost (as
    if the process died right after each write)."""

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        raise AssertionError("the runner never writes a store the sink owns")


class _FailAt(Operator):
    def __init__(self, at: int | None) -> None:
        self.at, self.seen = at, 0

    async def process(self, batch: Batch) -> Batch:
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("injected failure")
        return batch


async def test_exactly_once_position_in_the_write_transaction(
        mongo_uri: str, mongo_db: Any) -> None:
    rows = [{"_id": i, "v": i} for i in range(100)]
    store = _CrashBeforeCommit(mongo_uri, database=mongo_db.name, collection="_state")

    def pipeline(fail_at: int | None) -> Pipeline:
        sink = MongoSink(mongo_uri, database=mongo_db.name, collection="t",
                         write_mode="append", state_collection="_state")
        return Pipeline(MemorySource(rows, batch_size=10), [_FailAt(fail_at)], sink,
                        name="eo", checkpoint_store=store)

    try:
        with pytest.raises(StageError, match="injected"):
            await pipeline(6).run(handle_signals=False)
        written = await mongo_db.t.count_documents({})
        assert 0 < written <= 50
        stored = await store.load("eo")  # the checkpoint and the rows in one transaction
        assert stored is not None and stored.position == written
        # append mode: any replayed row would be a duplicate key (ConflictError)
        await pipeline(None).run(handle_signals=False)
        assert await store.load("eo") == Checkpoint(100, pass_open=False)
        assert sorted([d["_id"] async for d in mongo_db.t.find()]) == list(range(100))
    finally:
        await store.close()
