"""Rollback through ``etlsync serve`` into PostgreSQL: a run, a rollback, the target (rows,
columns and checkpoint) equal to its state before the run."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from etlsync.cli import main
from etlsync.service import ManualClock, RunStatus, Service, load_project
from tests.service.conftest import MakeProject

pytestmark = pytest.mark.integration


async def state(dsn: str, schema: str) -> tuple[Any, ...]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = sorted(tuple(r) for r in await conn.fetch(f'SELECT * FROM "{schema}".orders'))
        cols = [r[0] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND "
            "table_name = 'orders' ORDER BY ordinal_position", schema)]
        cp = await conn.fetch(f'SELECT pipeline, position::text FROM "{schema}"._etlsync_state')
        return rows, cols, sorted(tuple(r) for r in cp)
    finally:
        await conn.close()


@pytest.mark.parametrize("mode", ["upsert", "overwrite"])
async def test_a_run_a_rollback_and_the_postgres_target_is_as_before(
        make_project: MakeProject, clock: ManualClock, pg_dsn: str, schema: str,
        mode: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    job = {"source": {"type": "memory", "rows": [
        {"id": 1, "amount": "${trigger.amount}", "note": "${trigger.note}"},
        {"id": "${trigger.new_id}", "amount": "5.5", "note": "new"}]},
        "operators": [{"cast": {"types": {"id": "integer", "amount": "decimal"}}}],
        "sink": {"type": "postgres", "connection": pg_dsn, "schema": schema, "table": "orders"},
        "write": {"write_mode": mode}, "sync": {"primary_key": "id"}}
    root = make_project({"jobs": {"orders": {}}}, {"orders": job})
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        await service.trigger("orders", params={"amount": "1.25", "note": "first", "new_id": 2})
        await service.wait_idle()
        before = await state(pg_dsn, schema)
        run = await service.trigger("orders", params={"amount": "9.99", "note": "second",
                                                      "new_id": 3})
        assert run is not None
        await service.wait_idle()
        done = await service.run(run.id)
        assert done is not None and done.status is RunStatus.SUCCEEDED and done.journal
        assert await state(pg_dsn, schema) != before
    finally:
        await service.stop()
    assert await asyncio.to_thread(main, ["rollback", run.id, "-p", str(root)]) == 0
    assert await state(pg_dsn, schema) == before
