"""Two ``etlsync serve`` processes on one PostgreSQL state database: kill -9 of the one
running a job; the other takes the job after the lease expires, runs it again exactly once
from its checkpoint, and the target holds every row exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from etlsync.service import RunStatus
from tests.service.serve_process import ServeProcess, history, wait_for

pytestmark = pytest.mark.integration
ROWS = 60


def write_project(root: Path, dsn: str, schema: str) -> None:
    (root / "jobs").mkdir(parents=True)
    (root / "etlsync-project.yaml").write_text(yaml.safe_dump({
        "http": {"listen": "127.0.0.1:0"},
        "state": {"url": dsn, "schema": schema, "lease_ttl": "3s", "heartbeat": "0.5s"},
        "jobs": {"load": {}}}))
    job = {"source": {"type": "memory", "rows": [{"id": i, "v": f"row {i}"} for i in range(ROWS)],
                      "batch_size": 3},
           # append into PostgreSQL with the checkpoint in the same transaction (exactly-once:
           # a replay would show as duplicate rows); the slow second sink makes the run last
           "sinks": [{"type": "postgres", "connection": dsn, "schema": schema, "table": "t"},
                     {"type": "collect", "delay": 0.15}]}
    (root / "jobs" / "load.yaml").write_text(yaml.safe_dump(job))


async def target(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT to_regclass($1)::oid", f'"{schema}".t') is None:
            return []
        return [tuple(r) for r in await conn.fetch(f'SELECT id, v FROM "{schema}".t ORDER BY id')]
    finally:
        await conn.close()


async def test_the_other_instance_takes_over_after_kill9_and_runs_the_job_once(
        tmp_path: Path, pg_dsn: str, schema: str) -> None:
    root = tmp_path / "proj"
    write_project(root, pg_dsn, schema)
    a, b = ServeProcess(root, "a"), ServeProcess(root, "b")
    try:
        await asyncio.gather(a.ready(), b.ready())
        run = await a.trigger("load")

        async def partly_written() -> bool:
            runs = await history(root)
            return bool(runs) and runs[0].status is RunStatus.RUNNING and \
                len(await target(pg_dsn, schema)) >= 9
        await wait_for(partly_written, what="the run to be part-way")
        a.kill9()
        killed_at = time.time()
        written = len(await target(pg_dsn, schema))
        assert 0 < written < ROWS
        await asyncio.sleep(0.5)
        assert len(await target(pg_dsn, schema)) == written  # nobody writes before the lease ends

        async def recovered() -> list[Any] | None:
            runs = await history(root)
            return runs if len(runs) >= 2 and all(r.status.finished for r in runs) else None
        runs = await wait_for(recovered, what="the other instance's recovery run")
        await asyncio.sleep(2)  # both would have recovered by now if both could
        runs = await history(root)
        assert b.terminate() == 0
    finally:
        for p in (a, b):
            if p.proc.poll() is None:
                p.proc.kill()
    lost, again = runs
    assert lost.id == run["id"] and lost.instance == "a" and lost.status is RunStatus.LOST
    assert "instance a stopped renewing its lease" in (lost.error or "")
    assert (again.trigger, again.retry_of, again.instance) == ("recovery", lost.id, "b")
    assert again.status is RunStatus.SUCCEEDED
    assert again.fence is not None and lost.fence is not None and again.fence > lost.fence
    assert again.started_at is not None and again.started_at >= killed_at + 1.0
    assert await target(pg_dsn, schema) == [(i, f"row {i}") for i in range(ROWS)]
    assert again.rows_written == ROWS - written
