"""PostgresSink's insert-only upsert path: the key look-up is skipped only when a unique index
on the key guards the table, and results are the same either way."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from etlsync import Batch
from etlsync.connectors.postgres import PostgresSink, qualified
from etlsync.core.errors import ConflictError
from etlsync.core.stages import StageContext
from etlsync.log import get_logger

pytestmark = pytest.mark.integration


async def open_sink(pg_dsn: str, table: str, **kw: Any) -> PostgresSink:
    sink = PostgresSink(pg_dsn, table=table, write_mode="upsert", **kw)
    await sink.open(StageContext(table, "sink", get_logger()))
    return sink


async def stored(conn: asyncpg.Connection, table: str) -> dict[int, Any]:
    rows = await conn.fetch(f'SELECT id, v FROM {qualified("public", table)} ORDER BY id')
    return {r["id"]: r["v"] for r in rows}


@pytest.mark.parametrize(("ddl", "pk", "guarded"), [
    ("id int PRIMARY KEY, other int, v text", (), True),
    ("id int, other int, v text, UNIQUE (id)", ("id",), True),
    ("id int, other int, v text, UNIQUE (id, other)", ("id",), False),  # not implied by id
    ("id int, other int, v text, UNIQUE (id) DEFERRABLE INITIALLY DEFERRED", ("id",), False),
    ("id int, other int, v text", ("id",), False),
])
async def test_key_guard_detects_only_immediate_unique_indexes_on_the_key(
        pg_dsn: str, conn: asyncpg.Connection, table: str, ddl: str, pk: tuple[str, ...],
        guarded: bool) -> None:
    await conn.execute(f'CREATE TABLE "{table}" ({ddl})')
    sink = await open_sink(pg_dsn, table, primary_key=pk)
    try:
        assert await sink._key_guarded(sink.connection) is guarded
    finally:
        await sink.close()


@pytest.mark.parametrize("conflict", ["merge", "overwrite", "skip"])
async def test_batches_of_new_then_stored_then_new_keys_upsert_correctly(
        pg_dsn: str, conn: asyncpg.Connection, table: str, conflict: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, v text)')
    sink = await open_sink(pg_dsn, table, conflict=conflict)
    try:
        await sink.write(Batch([{"id": i, "v": "a"} for i in range(5)]))
        assert sink._keys_new
        await sink.write(Batch([{"id": i, "v": "b"} for i in range(3, 8)]))  # 3, 4 stored
        assert not sink._keys_new
        await sink.write(Batch([{"id": i, "v": "c"} for i in range(8, 10)]))
        assert sink._keys_new
    finally:
        await sink.close()
    second = "a" if conflict == "skip" else "b"
    expected = {0: "a", 1: "a", 2: "a", 3: second, 4: second, 5: "b", 6: "b", 7: "b",
                8: "c", 9: "c"}
    assert await stored(conn, table) == expected


async def test_without_a_unique_index_stored_keys_are_looked_up_not_duplicated(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (id int, v text)')
    sink = await open_sink(pg_dsn, table, primary_key=["id"], conflict="fail")
    try:
        await sink.write(Batch([{"id": 1, "v": "a"}, {"id": 2, "v": "a"}]))
        with pytest.raises(ConflictError, match="id=2"):
            await sink.write(Batch([{"id": 2, "v": "b"}, {"id": 3, "v": "b"}]))
    finally:
        await sink.close()
    assert await stored(conn, table) == {1: "a", 2: "a"}
