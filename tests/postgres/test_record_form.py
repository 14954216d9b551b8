"""PostgresSink with record-form batches (no dicts built) and with the text COPY path: the same
tables as dict-form batches through binary COPY, in every write mode."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from etlsync import Batch, Pipeline
from etlsync.connectors.postgres import PostgresSink, qualified
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.stages import StageContext
from etlsync.log import get_logger
from etlsync.testing import MemorySource

pytestmark = pytest.mark.integration

COLUMNS = ("id", "name", "price", "at", "meta", "ok")


def records(ids: range, tag: str = "") -> list[tuple[Any, ...]]:
    return [(i, None if i % 7 == 3 else f"n{i}{tag}\t\\x\n" if i % 5 == 0 else f"n{i}{tag}",
             Decimal(i) / 4, dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i),
             {"i": i} if i % 2 else None, i % 3 == 0) for i in ids]


def dict_batch(recs: list[tuple[Any, ...]]) -> Batch:
    return Batch([dict(zip(COLUMNS, r, strict=True)) for r in recs])


async def dump(conn: asyncpg.Connection, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await conn.fetch(
        f"SELECT id, name, price::text, at, meta::text, ok FROM {qualified('public', table)} "
        "ORDER BY id")]


async def load(pg_dsn: str, table: str, batches: list[Batch], **kw: Any) -> None:
    sink = PostgresSink(pg_dsn, table=table, **kw)
    await sink.open(StageContext(table, "sink", get_logger()))
    try:
        for b in batches:
            await sink.write(b)
            if b.columns is not None:
                assert b.records is not None, "the sink built dicts of a record-form batch"
    finally:
        await sink.close()


@pytest.mark.parametrize("mode", ["append", "upsert"])
async def test_record_form_and_text_copy_load_what_dict_form_and_binary_load(
        pg_dsn: str, conn: asyncpg.Connection, table: str, mode: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = records(range(40)), records(range(30, 60), tag="-2")
    if mode == "append":
        second = records(range(60, 90))
    pk = ["id"] if mode == "upsert" else []
    await load(pg_dsn, f"{table}_b", [dict_batch(first), dict_batch(second)],
               write_mode=mode, primary_key=pk, text_copy=False)
    binary = asyncpg.Connection.copy_records_to_table
    calls: list[str] = []

    async def spy(self: asyncpg.Connection, table_name: str, **kw: Any) -> Any:
        calls.append(table_name)
        return await binary(self, table_name, **kw)

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", spy)
    await load(pg_dsn, table, [Batch.from_records(COLUMNS, list(first)),
                               Batch.from_records(COLUMNS, list(second))],
               write_mode=mode, primary_key=pk)
    assert calls == []  # every column rendered as text
    expected = await dump(conn, f"{table}_b")
    assert len(expected) == (60 if mode == "upsert" else 70)
    assert await dump(conn, table) == expected
    if mode == "upsert":
        assert expected[36][1] == "n36-2"


async def test_record_form_into_an_existing_table_with_mapped_and_missing_columns(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (id bigint PRIMARY KEY, label text, '
                       "price numeric(8,2), extra text DEFAULT 'd')")
    batch = Batch.from_records(("price", "id", "nm"), [(Decimal("1.005"), 1, "a"),
                                                       (None, 2, "b\\c")])
    await load(pg_dsn, table, [batch], write_mode="upsert", column_map={"nm": "label"},
               schema_policy="discard")
    got = [tuple(r) for r in await conn.fetch(f'SELECT * FROM "{table}" ORDER BY id')]
    assert got == [(1, "a", Decimal("1.01"), "d"), (2, "b\\c", None, "d")]


async def test_record_form_upsert_with_duplicate_keys_merges_like_dict_form(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    recs = [(1, "a"), (2, "b"), (1, "a2")]
    for name, batch, text in ((f"{table}_b", Batch([{"id": i, "v": v} for i, v in recs]), False),
                              (table, Batch.from_records(("id", "v"), list(recs)), True)):
        await conn.execute(f'CREATE TABLE "{name}" (id int PRIMARY KEY, v text)')
        await load(pg_dsn, name, [batch], write_mode="upsert", text_copy=text)
    assert await conn.fetch(f'SELECT * FROM "{table}" ORDER BY id') == await conn.fetch(
        f'SELECT * FROM "{table}_b" ORDER BY id')


async def test_pipeline_of_record_batches_creates_the_table_and_commits_positions(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    rows = [{"id": i, "x": i / 2, "s": f"r{i}"} for i in range(10)]
    source = MemorySource(rows, batch_size=4, record_form=True)
    await Pipeline(source, [], [PostgresSink(pg_dsn, table=table)], name=table).run()
    got = [dict(r) for r in await conn.fetch(f'SELECT * FROM "{table}" ORDER BY id')]
    assert got == rows
    stored = await conn.fetchval("SELECT position::text FROM _etlsync_state WHERE pipeline = $1",
                                 table)
    assert Checkpoint.decode(stored) == Checkpoint(10, pass_open=False)


@pytest.mark.parametrize(("conflict", "expected"), [
    ("overwrite", [(1, "a", 1), (2, "new", None), (3, "c", None)]),
    ("merge", [(1, "a", 1), (2, "new", 2), (3, "c", None)]),
    ("skip", [(1, "a", 1), (2, "b", 2), (3, "c", None)]),
    ("fail", None),
])
async def test_cdc_insert_batches_take_the_copy_path_and_keep_conflict_semantics(
        pg_dsn: str, conn: asyncpg.Connection, table: str, conflict: str,
        expected: list[tuple[Any, ...]] | None) -> None:
    from etlsync import Op
    from etlsync.core.errors import ConflictError

    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, v text, w int)')
    await conn.execute(f"INSERT INTO \"{table}\" VALUES (1, 'a', 1)")
    new = Batch([{"id": 4, "v": "d"}, {"id": 5, "v": "e"}], ops=[Op.INSERT, Op.INSERT])
    clash = Batch([{"id": 2, "v": "new"}, {"id": 3, "v": "c"}], ops=[Op.INSERT, Op.INSERT])
    await conn.execute(f"INSERT INTO \"{table}\" VALUES (2, 'b', 2)")
    if expected is None:
        with pytest.raises(ConflictError, match="id=2"):
            await load(pg_dsn, table, [new, clash], write_mode="upsert", conflict=conflict)
        assert [r["id"] for r in await conn.fetch(f'SELECT id FROM "{table}" ORDER BY id')] == [
            1, 2, 4, 5]
        return
    await load(pg_dsn, table, [new, clash], write_mode="upsert", conflict=conflict)
    got = [tuple(r) for r in await conn.fetch(f'SELECT * FROM "{table}" ORDER BY id')]
    assert got == [*expected, (4, "d", None), (5, "e", None)]


@pytest.mark.parametrize("bad_at", [0, 3, 9])
async def test_a_chunk_that_does_not_render_sends_the_rest_of_the_batch_in_binary(
        pg_dsn: str, conn: asyncpg.Connection, table: str, bad_at: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from etlsync.connectors.postgres import payload

    monkeypatch.setattr(payload, "COPY_CHUNK_ROWS", 3)
    at = [dt.datetime(2024, 1, 1) + dt.timedelta(hours=i) for i in range(10)]
    at[bad_at] = dt.datetime.max  # asyncpg sends 'infinity': text must not render it
    recs: list[tuple[Any, ...]] = [(i, at[i], f"v{i}\t") for i in range(10)]
    for name, text in ((f"{table}_b", False), (table, True)):
        await conn.execute(f'CREATE TABLE "{name}" (id int, at timestamp, v text)')
        await load(pg_dsn, name, [Batch.from_records(("id", "at", "v"), list(recs))],
                   text_copy=text)
    got = await conn.fetch(f'SELECT id, at::text, v FROM "{table}" ORDER BY id')
    assert got == await conn.fetch(f'SELECT id, at::text, v FROM "{table}_b" ORDER BY id')
    assert len(got) == 10 and got[bad_at]["at"] == "infinity"
