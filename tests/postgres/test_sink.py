"""PostgresSink against the real server: every write mode, conflicts, CDC ops, schema policy."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from etlsync import Batch, Op, Pipeline, Schema
from etlsync.connectors.postgres import (
    UNCHANGED,
    PostgresSink,
    PostgresSource,
    qualified,
    quote_ident,
)
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import ConflictError
from etlsync.core.schema import Column, ColumnType
from etlsync.core.stages import StageContext
from etlsync.log import get_logger
from etlsync.testing import MemorySource

pytestmark = pytest.mark.integration


def ctx(name: str = "p") -> StageContext:
    return StageContext(name, "sink", get_logger())


async def close_after_complete_pass(sink: PostgresSink) -> None:
    """End the pass as the runner does for a source that ended by itself, then close."""
    await sink.write(Batch([], end_of_pass=True))
    await sink.close()


async def rows_of(conn: asyncpg.Connection, table: str, order: str = "id") -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(
        f'SELECT * FROM {qualified("public", table)} ORDER BY "{order}"')]


async def open_sink(pg_dsn: str, table: str, **kw: Any) -> PostgresSink:
    sink = PostgresSink(pg_dsn, table=table, **kw)
    await sink.open(ctx(table))
    return sink


async def test_append_creates_table_from_schema_and_copies_typed_values(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    schema = Schema((Column("id", ColumnType.INTEGER, False), Column("price", ColumnType.DECIMAL),
                     Column("at", ColumnType.TIMESTAMP), Column("meta", ColumnType.JSON)), ("id",))
    rows = [{"id": i, "price": Decimal("1.50") * i,
             "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=i),
             "meta": {"k": [i]}} for i in range(1, 4)]
    sink = await open_sink(pg_dsn, table)
    try:
        await sink.write(Batch(rows[:2], schema=schema))
        await sink.write(Batch(rows[2:], schema=schema))
    finally:
        await sink.close()
    got = await rows_of(conn, table)
    assert [r["id"] for r in got] == [1, 2, 3]
    assert got[2]["price"] == Decimal("4.50")
    assert got[0]["at"] == rows[0]["at"]
    assert got[1]["meta"] == '{"k": [2]}'
    pk = await conn.fetchval("SELECT count(*) FROM pg_index WHERE indrelid = $1::regclass "
                             "AND indisprimary", table)
    assert pk == 1
    typ = await conn.fetchval("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = $1::regclass AND attname = 'at'", table)
    assert typ == "timestamp with time zone"


async def test_append_through_pipeline_infers_types_and_commits_position(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    rows = [{"id": i, "ok": i % 2 == 0, "x": i / 2} for i in range(10)]
    await Pipeline(MemorySource(rows, batch_size=3), [], [PostgresSink(pg_dsn, table=table)],
                   name=table).run()
    assert await rows_of(conn, table) == rows
    pos = await conn.fetchval("SELECT position::text FROM _etlsync_state WHERE pipeline = $1",
                              table)
    assert Checkpoint.decode(pos) == Checkpoint(10, pass_open=False)


async def test_upsert_fail_names_the_existing_key_and_writes_nothing(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (id int, region text, v int, '
                       "PRIMARY KEY (id, region))")
    await conn.execute(f'INSERT INTO "{table}" VALUES (1, \'eu\', 1)')
    sink = await open_sink(pg_dsn, table, write_mode="upsert", conflict="fail")
    try:
        with pytest.raises(ConflictError, match="id=1, region='eu'"):
            await sink.write(Batch([{"id": 2, "region": "eu", "v": 2},
                                    {"id": 1, "region": "eu", "v": 9}]))
        with pytest.raises(ConflictError, match="twice"):
            await sink.write(Batch([{"id": 5, "region": "us", "v": 2},
                                    {"id": 5, "region": "us", "v": 3}]))
        await sink.write(Batch([{"id": 1, "region": "us", "v": 7}]))
    finally:
        await sink.close()
    got = {(r["id"], r["region"]): r["v"] for r in await rows_of(conn, table)}
    assert got == {(1, "eu"): 1, (1, "us"): 7}


async def test_cdc_ops_deletes_updates_truncate_and_unchanged_toast(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, big text, n int)')
    await conn.execute(f'INSERT INTO "{table}" VALUES (1, \'toast-1\', 1), (2, \'toast-2\', 2), '
                       "(3, 'x', 3)")
    sink = await open_sink(pg_dsn, table, write_mode="upsert")
    try:
        await sink.write(Batch(
            [{"id": 1, "big": UNCHANGED, "n": 10},       # TOAST unchanged: keep 'toast-1'
             {"id": 2, "big": None, "n": 2},             # delete by key
             {"id": 4, "big": "new", "n": 4},
             {"id": 4, "big": UNCHANGED, "n": 40},       # two changes of one key in a batch
             {"id": 3, "big": "x", "n": 3},              # pk change 3 -> 5 as delete + insert
             {"id": 5, "big": "x", "n": 3}],
            ops=[Op.UPDATE, Op.DELETE, Op.INSERT, Op.UPDATE, Op.DELETE, Op.INSERT]))
        assert {r["id"]: (r["big"], r["n"]) for r in await rows_of(conn, table)} == {
            1: ("toast-1", 10), 4: ("new", 40), 5: ("x", 3)}
        await sink.write(Batch([{}, {"id": 9, "big": "after", "n": 9}],
                               ops=[Op.TRUNCATE, Op.INSERT]))
    finally:
        await sink.close()
    assert await rows_of(conn, table) == [{"id": 9, "big": "after", "n": 9}]


async def test_overwrite_is_atomic_readers_see_old_rows_until_swap(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, v text)')
    await conn.execute(f'INSERT INTO "{table}" VALUES (1, \'old\'), (2, \'old\')')
    sink = await open_sink(pg_dsn, table, write_mode="overwrite")
    try:
        await sink.write(Batch([{"id": 7, "v": "new"}]))
        await sink.write(Batch([{"id": 8, "v": "new"}]))
        assert [r["v"] for r in await rows_of(conn, table)] == ["old", "old"]
    finally:
        await close_after_complete_pass(sink)
    assert await rows_of(conn, table) == [{"id": 7, "v": "new"}, {"id": 8, "v": "new"}]
    pk = await conn.fetchval("SELECT count(*) FROM pg_index WHERE indrelid = $1::regclass "
                             "AND indisprimary", table)
    assert pk == 1


async def test_column_map_and_type_map_on_create(pg_dsn: str, conn: asyncpg.Connection,
                                                 table: str) -> None:
    sink = await open_sink(pg_dsn, table, column_map={"Name": "customer_name"},
                           type_map={"code": "varchar(8)"}, primary_key=["id"],
                           write_mode="upsert")
    try:
        await sink.write(Batch([{"id": 1, "Name": "Ann", "code": "A1"}]))
        await sink.write(Batch([{"id": 1, "Name": "Bob", "code": "B2"}]))
    finally:
        await sink.close()
    assert await rows_of(conn, table) == [{"id": 1, "customer_name": "Bob", "code": "B2"}]
    typ = await conn.fetchval("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = $1::regclass AND attname = 'code'", table)
    assert typ == "character varying(8)"


async def test_hostile_identifiers_are_quoted_everywhere(pg_dsn: str, conn: asyncpg.Connection,
                                                         table: str) -> None:
    name = f'{table} Mixed"Case.v2; DROP TABLE x; --'
    hostile = 'we"ird; DROP TABLE x; --'
    q = qualified("public", name)
    await conn.execute(f'CREATE TABLE {q} ("Id Key" int PRIMARY KEY, {quote_ident(hostile)} text)')
    try:
        sink = PostgresSink(pg_dsn, table=name, write_mode="upsert", conflict="merge")
        await sink.open(ctx(table))
        try:
            await sink.write(Batch([{"Id Key": 1, hostile: "a", "New Col;": 1}]))
            await sink.write(Batch([{"Id Key": 1, hostile: "b"}, {"Id Key": 2, hostile: "c"}],
                                   ops=[Op.UPDATE, Op.INSERT]))
            await sink.write(Batch([{"Id Key": 2}], ops=[Op.DELETE]))
        finally:
            await sink.close()
        got = [dict(r) for r in await conn.fetch(f"SELECT * FROM {q}")]
        assert got == [{"Id Key": 1, hostile: "b", "New Col;": 1}]
        src = PostgresSource(pg_dsn, table=name, sync_mode="incremental", cursor_field="New Col;")
        batches = [b async for b in src.read(None)]
        assert [r["Id Key"] for b in batches for r in b.rows] == [1]
        ow = PostgresSink(pg_dsn, table=name, write_mode="overwrite", exactly_once=False)
        await ow.open(ctx(table))
        await ow.write(Batch([{"Id Key": 5, hostile: "z"}]))
        await close_after_complete_pass(ow)
        assert [dict(r) for r in await conn.fetch(f"SELECT * FROM {q}")] == [
            {"Id Key": 5, hostile: "z", "New Col;": None}]
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {q}")


@pytest.mark.parametrize(("crash_at", "staged_rows"), [(4, 300), (12, 1000)])
async def test_overwrite_from_postgres_source_swaps_at_end_of_pass_and_resumes_after_crash(
        pg_dsn: str, conn: asyncpg.Connection, table: str, crash_at: int,
        staged_rows: int) -> None:
    """Crash mid-load, or on the pass's last (empty) batch: readers keep the old table, the
    resumed run continues the new table and swaps it in."""
    from etlsync.connectors.postgres import PostgresCheckpointStore

    src_table, dst = f"{table}_b", table
    await conn.execute(f'CREATE TABLE "{src_table}" (id int PRIMARY KEY, v text)')
    await conn.execute(f"INSERT INTO \"{src_table}\" SELECT i, 'v' || i FROM generate_series(1, 1000) i")
    await conn.execute(f'CREATE TABLE "{dst}" (id int PRIMARY KEY, v text)')
    await conn.execute(f"INSERT INTO \"{dst}\" VALUES (-1, 'old')")
    store = PostgresCheckpointStore(pg_dsn)
    written = 0

    class Crashing(PostgresSink):
        async def write(self, batch: Batch) -> None:
            nonlocal written
            written += 1
            if written == crash_at:
                raise RuntimeError("crash")
            await super().write(batch)

    def pipeline(sink: PostgresSink) -> Pipeline:
        return Pipeline(PostgresSource(pg_dsn, table=src_table, batch_size=100), [], [sink],
                        name=table, checkpoint_store=store)

    try:
        with pytest.raises(Exception, match="crash"):
            await pipeline(Crashing(pg_dsn, table=dst, write_mode="overwrite")).run()
        assert await rows_of(conn, dst) == [{"id": -1, "v": "old"}]  # readers: old table
        staged = await conn.fetchval(f'SELECT count(*) FROM "{dst}__etlsync_new"')
        assert staged == staged_rows
        await pipeline(PostgresSink(pg_dsn, table=dst, write_mode="overwrite")).run()
    finally:
        await store.close()
    got = await rows_of(conn, dst)
    assert [r["id"] for r in got] == list(range(1, 1001))
    assert await conn.fetchval("SELECT to_regclass($1)", f'"{dst}__etlsync_new"') is None
