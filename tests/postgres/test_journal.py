"""The PostgreSQL journal: every kind of change a run makes is reverted exactly (keyed and
unkeyed tables, overwrites, new columns), checkpoint included; other sessions' writes are not
recorded; a later run blocks the revert."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from etlsync.connectors.postgres import PostgresSink
from etlsync.core.batch import Batch
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.revert import RevertError, Rewind
from tests.service.journal_cases import CASES, SEED, run

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema(conn: asyncpg.Connection, unique_name: str) -> AsyncIterator[str]:
    await conn.execute(f'CREATE SCHEMA "{unique_name}"')
    yield unique_name
    await conn.execute(f'DROP SCHEMA "{unique_name}" CASCADE')


async def snapshot(conn: asyncpg.Connection, schema: str, table: str = "t") -> tuple[Any, ...]:
    cols = [r[0] for r in await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND "
        "table_name = $2 ORDER BY ordinal_position", schema, table)]
    rows = sorted(tuple(r) for r in await conn.fetch(f'SELECT * FROM "{schema}"."{table}"')) \
        if cols else []
    state = [r[0] for r in await conn.fetch(
        f'SELECT position::text FROM "{schema}"._etlsync_state ORDER BY pipeline')]
    return cols, rows, state


def sink(dsn: str, schema: str, **kw: Any) -> PostgresSink:
    kw.setdefault("write_mode", "upsert")
    kw.setdefault("primary_key", ["id"])
    return PostgresSink(dsn, table="t", schema=schema, **kw)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_reverted_run_leaves_the_table_and_checkpoint_as_before(
        pg_dsn: str, conn: asyncpg.Connection, schema: str, case: str) -> None:
    await run(sink(pg_dsn, schema), [Batch(SEED)], "p", None)
    before = await snapshot(conn, schema)
    target = sink(pg_dsn, schema)
    await run(target, CASES[case], "p", "r1")
    assert await snapshot(conn, schema) != before
    report = await target.revert("r1", Rewind("p", Checkpoint.decode(before[2][0])))
    assert await snapshot(conn, schema) == before
    assert report.checkpoint_rewound
    with pytest.raises(RevertError, match="nothing was recorded for run r1"):
        await target.revert("r1")


async def test_appends_without_a_key_delete_as_many_equal_rows_as_were_inserted(
        pg_dsn: str, conn: asyncpg.Connection, schema: str) -> None:
    rows = [{"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {"a": 2, "b": None}]
    await run(sink(pg_dsn, schema, write_mode="append", primary_key=[]), [Batch(rows)], "p",
              None)
    before = await snapshot(conn, schema)
    target = sink(pg_dsn, schema, write_mode="append", primary_key=[])
    await run(target, [Batch([{"a": 1, "b": "x"}, {"a": 2, "b": None}, {"a": 3, "b": "z"}])],
              "p", "r1")
    report = await target.revert("r1")
    assert report.rows_deleted == 3
    assert (await snapshot(conn, schema))[:2] == before[:2]


async def test_an_overwrite_keeps_the_replaced_table_until_forgotten(
        pg_dsn: str, conn: asyncpg.Connection, schema: str) -> None:
    await run(sink(pg_dsn, schema), [Batch(SEED)], "p", None)
    before = await snapshot(conn, schema)
    target = sink(pg_dsn, schema, write_mode="overwrite")
    await run(target, [Batch([{"id": 1, "v": "only", "n": 0.0}])], "p", "r1")
    assert len((await snapshot(conn, schema))[1]) == 1
    await target.revert("r1", Rewind("p", Checkpoint.decode(before[2][0])))
    assert await snapshot(conn, schema) == before
    await run(target, [Batch([{"id": 1, "v": "only", "n": 0.0}])], "p", "r2")
    kept = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND "
                               "tablename LIKE '\\_etlsync\\_prev\\_%'", schema)
    assert kept == 1
    assert await target.forget(["r2"]) >= 1
    assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND "
                               "tablename LIKE '\\_etlsync\\_prev\\_%'", schema) == 0
    with pytest.raises(RevertError, match="nothing was recorded for run r2"):
        await target.revert("r2")


async def test_writes_of_other_sessions_are_not_recorded_and_later_runs_block(
        pg_dsn: str, conn: asyncpg.Connection, schema: str) -> None:
    await run(sink(pg_dsn, schema), [Batch(SEED)], "p", None)
    target = sink(pg_dsn, schema)
    await run(target, [Batch([{"id": 1, "v": "r1", "n": 0.0}])], "p", "r1")
    await conn.execute(f'UPDATE "{schema}".t SET v = $1 WHERE id = 5', "by hand")
    journal = await conn.fetch(f'SELECT run_id, op FROM "{schema}"._etlsync_journal')
    assert [(r["run_id"], r["op"]) for r in journal] == [("r1", "U")]
    await run(sink(pg_dsn, schema), [Batch([{"id": 1, "v": "r2", "n": 0.0}])], "q", "r2")
    with pytest.raises(RevertError, match=r"run r2 changed .* after run r1"):
        await target.revert("r1")
    await target.revert("r2")
    await target.revert("r1")
    assert await conn.fetchval(f'SELECT v FROM "{schema}".t WHERE id = 1') == "v1"
    assert await conn.fetchval(f'SELECT v FROM "{schema}".t WHERE id = 5') == "by hand"
