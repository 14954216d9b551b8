"""The state database on both drivers: dedupe keys, leases with fencing tokens, lost runs
claimed exactly once, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from etlsync.service.state import RunRecord, RunStatus, StateStore, open_state


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path,
                unique_name: str) -> AsyncIterator[StateStore]:
    if request.param == "sqlite":
        s = open_state(None, tmp_path)
    else:
        dsn = request.getfixturevalue("pg_dsn")
        s = open_state(dsn, tmp_path, schema=unique_name)
    await s.open()
    yield s
    await s.close()
    if request.param == "postgres":
        conn = await asyncpg.connect(request.getfixturevalue("pg_dsn"))
        await conn.execute(f'DROP SCHEMA "{unique_name}" CASCADE')
        await conn.close()


def record(job: str, **kw: object) -> RunRecord:
    from etlsync.service.service import new_run_id

    return RunRecord(id=new_run_id(), job=job, trigger="api", queued_at=time.time(),
                     **kw)  # type: ignore[arg-type]


async def test_a_dedupe_key_makes_one_run(store: StateStore) -> None:
    first, second = record("a", dedupe="schedule:a:60"), record("a", dedupe="schedule:a:60")
    assert await asyncio.gather(store.create_run(first), store.create_run(second)) == [True,
                                                                                      False]
    assert [r.id for r in await store.runs(job="a")] == [first.id]
    assert (await store.run_by_dedupe("schedule:a:60")).id == first.id  # type: ignore[union-attr]


async def test_leases_fence_a_holder_whose_lease_passed_on(store: StateStore) -> None:
    run = record("a")
    await store.create_run(run)
    token = await store.acquire_lease("a", "one", 0.3)
    assert token is not None and await store.acquire_lease("a", "two", 5) is None
    run.fence, run.instance, run.status = token, "one", RunStatus.RUNNING
    assert await store.update_run(run, "status", "fence", "instance", fenced=False)
    assert await store.update_run(run, "status")  # holds the current token
    await asyncio.sleep(0.4)
    assert await store.heartbeat("one", 5) == {}  # expired: not renewed
    assert not await store.update_run(run, "status")  # fenced out
    taken = await store.acquire_lease("a", "two", 5)
    assert taken == token + 1
    assert await store.heartbeat("two", 5) == {"a": taken}


async def test_a_lost_run_is_claimed_exactly_once(store: StateStore) -> None:
    run = record("a")
    await store.create_run(run)
    run.fence = await store.acquire_lease("a", "dead", 0.1)
    run.instance, run.status = "dead", RunStatus.RUNNING
    await store.update_run(run, "status", "fence", "instance", fenced=False)
    assert await store.mark_lost(time.time()) == []  # its lease still holds
    await asyncio.sleep(0.2)
    claims = await asyncio.gather(store.mark_lost(time.time()), store.mark_lost(time.time()))
    assert sorted(len(c) for c in claims) == [0, 1]
    (lost,) = next(c for c in claims if c)
    assert lost.status is RunStatus.LOST and "instance dead stopped renewing" in (lost.error or "")


async def test_retention_drops_old_finished_runs_and_log_lines(store: StateStore) -> None:
    from etlsync.service.state import LogLine

    old, new, queued = record("a"), record("a"), record("a")
    for r, ended in ((old, 100.0), (new, time.time())):
        r.status, r.ended_at = RunStatus.SUCCEEDED, ended
        await store.create_run(r)
    await store.create_run(queued)
    await store.add_logs([LogLine(old.id, 100.0, "info", "x"), LogLine(new.id, 100.0, "info",
                                                                       "old line"),
                          LogLine(new.id, time.time(), "info", "new line")])
    assert await store.prune(runs_before=1000.0, logs_before=1000.0) == (1, 2)
    assert {r.id for r in await store.runs()} == {new.id, queued.id}
    assert [x.message for x in await store.logs(new.id)] == ["new line"]
