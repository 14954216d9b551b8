"""Streaming behaviour of PostgresCdcSource against the real server."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from etlsync.connectors.postgres.cdc import PostgresCdcSource
from etlsync.connectors.postgres.replication.slots import slot_info
from etlsync.connectors.postgres.types import UNCHANGED
from etlsync.core.batch import Batch, Op
from etlsync.core.errors import ConfigError, ServiceNotReady
from etlsync.core.schema import ColumnType, Schema
from tests.postgres_cdc.conftest import Names, take, wait_streaming

pytestmark = pytest.mark.integration


def _source(dsn: str, names: Names, **kw: object) -> PostgresCdcSource:
    opts: dict[str, object] = {"tables": [names.table], "status_interval": 0.5, **kw}
    return PostgresCdcSource(dsn, slot=names.slot, publication=names.publication,
                             **opts)  # type: ignore[arg-type]


def _rows(batches: list[Batch]) -> int:
    return sum(len(b.rows) for b in batches)


def _changes(batches: list[Batch]) -> list[tuple[Op, dict[str, object]]]:
    return [(op, row) for b in batches for op, row in b.iter_changes()]


async def test_changes_in_order_with_commit_positions(pg: asyncpg.Connection, names: Names,
                                                      pg_dsn: str) -> None:
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (a int, b text, v int, PRIMARY KEY (a, b))")
    src = _source(pg_dsn, names, snapshot="never", batch_rows=3)
    agen = src.read(None)
    first = asyncio.ensure_future(
        take(agen, lambda g: _rows(g) >= 10 and g[-1].position is not None))
    await wait_streaming(pg, names.slot)  # changes before the slot exists are not in it
    async with pg.transaction():
        for i in range(5):
            await pg.execute(f"INSERT INTO {t} VALUES ($1, 'k', $1)", i)
    await pg.execute(f"UPDATE {t} SET v = 100 WHERE a = 1")
    await pg.execute(f"UPDATE {t} SET b = 'z' WHERE a = 2")  # key change
    await pg.execute(f"DELETE FROM {t} WHERE a = 3")
    await pg.execute(f"TRUNCATE {t}")
    batches = await first
    await agen.aclose()
    ops = [op for op, _ in _changes(batches)]
    assert ops == [Op.INSERT] * 5 + [Op.UPDATE, Op.DELETE, Op.INSERT, Op.DELETE, Op.TRUNCATE]
    changes = _changes(batches)
    assert changes[5][1] == {"a": 1, "b": "k", "v": 100}
    assert changes[6][1] == {"a": 2, "b": "k"} and changes[7][1] == {"a": 2, "b": "z", "v": 2}
    assert changes[8][1] == {"a": 3, "b": "k"}
    data = [b for b in batches if b.rows]
    assert data[0].stream == f"public.{t}"
    assert data[0].schema is not None and data[0].schema.primary_key == ("a", "b")
    # the 5-row transaction is split at batch_rows=3: the first part is not a resume point
    assert len(data[0].rows) == 3 and data[0].position is None
    assert isinstance(batches[-1].position, dict) and batches[-1].position["lsn"] > 0
    lsns = [b.position["lsn"] for b in batches if b.position is not None]
    assert lsns == sorted(lsns)


async def test_resume_from_position_redelivers_exactly_the_rest(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    await pg.execute(f"INSERT INTO {t} SELECT g, 'x' FROM generate_series(1, 50) g")
    src = _source(pg_dsn, names, snapshot="initial", snapshot_chunk_rows=20)
    schemas = await src.discover()
    assert schemas[f"public.{t}"].primary_key == ("id",)
    assert schemas[f"public.{t}"].names == ["id", "v"]
    agen = src.read(None)
    snap = await take(agen, lambda g: bool(g) and g[-1].position == {"lsn": g[0].position["lsn"]})
    assert [len(b.rows) for b in snap] == [20, 20, 10, 0]
    for i in range(51, 54):
        await pg.execute(f"INSERT INTO {t} VALUES ($1, 'y')", i)
    got = await take(agen, lambda g: _rows(g) >= 3)
    await agen.aclose()
    assert [r["id"] for b in got for r in b.rows] == [51, 52, 53]
    third = got[-1].position if got[-1].rows else got[-2].position
    assert third is not None and third["lsn"] > snap[0].position["lsn"]
    for i in range(54, 56):
        await pg.execute(f"INSERT INTO {t} VALUES ($1, 'y')", i)
    src2 = _source(pg_dsn, names)
    agen2 = src2.read(third)
    rest = await take(agen2, lambda g: _rows(g) >= 2)
    await pg.execute(f"INSERT INTO {t} VALUES (99, 'z')")
    more = await take(agen2, lambda g: _rows(g) >= 1)
    await agen2.aclose()
    assert [r["id"] for b in rest + more for r in b.rows] == [54, 55, 99]


async def test_unchanged_toast_full_identity_and_schema_changes(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, doc text, n int)")
    await pg.execute(f"ALTER TABLE {t} ALTER COLUMN doc SET STORAGE EXTERNAL")
    big = "".join(f"{i:08x}" for i in range(5000))  # 40 kB, stored out of line
    src = _source(pg_dsn, names, snapshot="never")
    agen = src.read(None)
    task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 6))
    await wait_streaming(pg, names.slot)
    await pg.execute(f"INSERT INTO {t} VALUES (1, $1, 1)", big)
    await pg.execute(f"UPDATE {t} SET n = 2 WHERE id = 1")  # doc unchanged: not sent
    await pg.execute(f"ALTER TABLE {t} ADD COLUMN extra text")
    await pg.execute(f"UPDATE {t} SET extra = 'e' WHERE id = 1")
    await pg.execute(f"ALTER TABLE {t} ALTER COLUMN n TYPE numeric USING n::numeric")
    await pg.execute(f"ALTER TABLE {t} REPLICA IDENTITY FULL")
    await pg.execute(f"UPDATE {t} SET n = 3.5 WHERE id = 1")
    await pg.execute(f"ALTER TABLE {t} DROP COLUMN extra")
    await pg.execute(f"DELETE FROM {t} WHERE id = 1")
    await pg.execute(f"INSERT INTO {t} VALUES (2, 'small', 1)")
    batches = await task
    await agen.aclose()
    changes = _changes(batches)
    assert changes[0][1]["doc"] == big
    assert changes[1][0] is Op.UPDATE and changes[1][1]["doc"] is UNCHANGED
    assert changes[1][1]["n"] == 2
    assert changes[2][1]["extra"] == "e"
    def schema_of(pred: Any) -> Schema:
        found = next(b for b in batches for r in b.rows if pred(r))
        assert found.schema is not None
        return found.schema

    assert "extra" not in schema_of(lambda r: r.get("doc") == big)
    assert "extra" in schema_of(lambda r: r.get("extra") == "e")
    retyped = schema_of(lambda r: r.get("n") == Decimal("3.5"))
    assert retyped.column("n").type is ColumnType.DECIMAL and "extra" in retyped
    assert "extra" not in schema_of(lambda r: r.get("id") == 2)
    # REPLICA IDENTITY FULL: the whole old row comes with the update and delete; the
    # primary key stays the table's, not "all columns"
    upd = next(b for b in batches if b.rows and b.ops == [Op.UPDATE] and b.before
               and b.before[0] and "extra" in b.before[0])
    assert upd.schema is not None and upd.schema.primary_key == ("id",)
    delete = next((op, row) for op, row in changes if op is Op.DELETE)
    assert delete[1]["id"] == 1 and "n" in delete[1]


async def test_on_commit_moves_confirmed_flush(pg: asyncpg.Connection, names: Names,
                                               pg_dsn: str) -> None:
    await pg.execute(f"CREATE TABLE {names.table} (id int PRIMARY KEY)")
    src = _source(pg_dsn, names, snapshot="never")
    agen = src.read(None)
    task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 1))
    await wait_streaming(pg, names.slot)
    await pg.execute(f"INSERT INTO {names.table} VALUES (1)")
    batches = await task
    pos = next(b.position for b in batches if b.rows)
    before = await slot_info(pg, names.slot)
    assert before is not None and (before.confirmed_flush_lsn or 0) < pos["lsn"]
    await src.on_commit(pos)
    for _ in range(50):
        info = await slot_info(pg, names.slot)
        if info is not None and info.confirmed_flush_lsn == pos["lsn"]:
            break
        await asyncio.sleep(0.1)
    await agen.aclose()
    assert info is not None and info.confirmed_flush_lsn == pos["lsn"]


async def test_missing_slot_and_publication_errors_name_the_fix(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    await pg.execute(f"CREATE TABLE {names.table} (id int PRIMARY KEY)")
    agen = _source(pg_dsn, names, create_publication=False).read(None)
    with pytest.raises(ConfigError, match="CREATE PUBLICATION"):
        await agen.__anext__()
    agen = _source(pg_dsn, names).read({"lsn": 12345})
    with pytest.raises(ServiceNotReady, match=r"slot .* is missing"):
        await agen.__anext__()


async def test_key_change_keeps_unchanged_toast_value(pg: asyncpg.Connection, names: Names,
                                                      pg_dsn: str) -> None:
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, doc text, n int)")
    await pg.execute(f"ALTER TABLE {t} ALTER COLUMN doc SET STORAGE EXTERNAL")
    big = "".join(f"{i:08x}" for i in range(4000))
    src = _source(pg_dsn, names, snapshot="never")
    agen = src.read(None)
    task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 3))
    await wait_streaming(pg, names.slot)
    await pg.execute(f"INSERT INTO {t} VALUES (1, $1, 1)", big)
    await pg.execute(f"UPDATE {t} SET id = 2 WHERE id = 1")  # doc is not sent: unchanged
    batches = await task  # (the value is read back from the row, now at id 2)
    await pg.execute(f"ALTER TABLE {t} REPLICA IDENTITY FULL")
    await pg.execute(f"UPDATE {t} SET id = 3, n = 5 WHERE id = 2")  # old row carries doc
    await pg.execute(f"DELETE FROM {t}")  # nothing to read back: the old row must serve
    batches += await take(agen, lambda g: _rows(g) >= 3)
    await agen.aclose()
    changes = _changes(batches)
    assert [op for op, _ in changes] == [Op.INSERT, Op.DELETE, Op.INSERT, Op.DELETE, Op.INSERT,
                                         Op.DELETE]
    assert changes[1][1] == {"id": 1}
    assert changes[2][1] == {"id": 2, "doc": big, "n": 1}  # read back, not UNCHANGED
    assert changes[3][1] == {"id": 2}
    assert changes[4][1] == {"id": 3, "doc": big, "n": 5}


async def test_streamed_in_progress_transactions_protocol_v2(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    # a tiny logical_decoding_work_mem makes the server stream transactions while they run
    src = _source(pg_dsn, names, snapshot="never", batch_rows=1000,
                  replication_settings={"logical_decoding_work_mem": "64kB"})
    agen = src.read(None)
    task = asyncio.ensure_future(take(agen, lambda g: any(
        r.get("id") == -1 for b in g for r in b.rows) and g[-1].position is not None))
    await wait_streaming(pg, names.slot)
    other = await asyncpg.connect(pg_dsn)
    try:
        big = pg.transaction()
        await big.start()
        await pg.execute(f"INSERT INTO {t} SELECT g, 'big' FROM generate_series(1, 3000) g")
        await pg.execute("SAVEPOINT s1")
        await pg.execute(f"INSERT INTO {t} SELECT g, 'rolled back' "
                         "FROM generate_series(3001, 5000) g")
        await pg.execute("ROLLBACK TO SAVEPOINT s1")
        await other.execute(f"INSERT INTO {t} VALUES (10000, 'small, commits first')")
        await pg.execute(f"UPDATE {t} SET v = 'big2' WHERE id <= 2000")
        await big.commit()
        aborted = other.transaction()
        await aborted.start()
        await other.execute(f"INSERT INTO {t} SELECT g, 'aborted' "
                            "FROM generate_series(20001, 24000) g")
        await aborted.rollback()
        await other.execute(f"INSERT INTO {t} VALUES (-1, 'end')")
    finally:
        await other.close()
    batches = await task
    await agen.aclose()
    assert src.streamed_transactions >= 2  # the big one and the aborted one were streamed
    changes = _changes(batches)
    ids = [row["id"] for _, row in changes]
    assert ids[0] == 10000  # committed first, delivered first
    assert ids[1:3001] == list(range(1, 3001))
    assert [op for op, _ in changes[3001:5001]] == [Op.UPDATE] * 2000
    assert ids[-1] == -1 and len(changes) == 5002  # nothing rolled back or aborted leaks
    # the big transaction spans batches of 1000 rows: only its last one is a resume point
    big = [b for b in batches if b.rows and all(r["v"] in ("big", "big2") for r in b.rows)]
    assert len(big) == 5
    assert [b.position is not None for b in big] == [False] * 4 + [True]


async def test_insert_runs_come_as_record_batches_and_mixed_changes_as_dicts(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text, n numeric)")
    src = _source(pg_dsn, names, snapshot="never", batch_rows=4)
    agen = src.read(None)
    got = asyncio.ensure_future(take(agen, lambda g: sum(map(len, g)) >= 6))
    await wait_streaming(pg, names.slot)
    await pg.execute(f"INSERT INTO {t} SELECT g, 'r' || g, g * 1.5 FROM generate_series(1, 6) g")
    batches = [b for b in await got if len(b)]
    # the second transaction only after the first one's batches: a batch may span
    # transactions that arrive together, which would make the split below differ
    got = asyncio.ensure_future(take(agen, lambda g: sum(map(len, g)) >= 4))
    async with pg.transaction():
        await pg.execute(f"INSERT INTO {t} VALUES (7, 'x', NULL), (8, NULL, 2)")
        await pg.execute(f"UPDATE {t} SET v = 'y' WHERE id = 7")
        await pg.execute(f"INSERT INTO {t} VALUES (9, 'z', 3)")
    batches += [b for b in await got if len(b)]
    await agen.aclose()
    # 6 inserts in one transaction: record form, split at batch_rows
    assert [len(b) for b in batches[:2]] == [4, 2]
    first = batches[0]
    assert first.columns == ("id", "v", "n") and first.records is not None
    assert first.records[0] == (1, "r1", Decimal("1.5"))
    assert first.ops == [Op.INSERT] * 4 and first.before == [None] * 4
    assert first.position is None and batches[1].position is not None
    # inserts, an update, an insert in one transaction: one batch of dicts, in order
    mixed = batches[2]
    assert mixed.records is None
    assert _changes([mixed]) == [
        (Op.INSERT, {"id": 7, "v": "x", "n": None}), (Op.INSERT, {"id": 8, "v": None, "n": 2}),
        (Op.UPDATE, {"id": 7, "v": "y", "n": None}), (Op.INSERT, {"id": 9, "v": "z", "n": 3})]
    assert batches[1].rows[1] == {"id": 6, "v": "r6", "n": Decimal("9.0")}
