"""Rollback: a run, a rollback, the target equal to its state before the run (SQLite here,
PostgreSQL in test_rollback_postgres.py); the checkpoint rewound; what cannot be reverted is
refused and left alone."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from etlsync.cli import main
from etlsync.service import ManualClock, RollbackRefused, RunStatus, Service, load_project

ROWS = [{"id": 1, "v": "${trigger.v}", "n": 1.5}, {"id": 2, "v": "b", "n": None},
        {"id": "${trigger.new}", "v": "new", "n": 2.0}]


def target(root: Path, table: str = "t") -> dict[str, Any]:
    conn = sqlite3.connect(root / "out" / "t.db")
    try:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        rows = sorted(conn.execute(f"SELECT rowid, * FROM {table}").fetchall()) if cols else []
        state = conn.execute("SELECT pipeline, position FROM _etlsync_state").fetchall()
        tables = sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
            "AND name NOT LIKE '\\_%' ESCAPE '\\'"))
        return {"columns": cols, "rows": rows, "state": sorted(state), "tables": tables}
    finally:
        conn.close()


def project(make_project: Any, mode: str = "upsert", extra: dict[str, Any] | None = None) -> Path:
    job = {"source": {"type": "memory", "rows": ROWS},
           "operators": [{"cast": {"types": {"id": "integer"}}}],
           "sink": {"type": "sqlite", "path": "../out/t.db", "table": "t"},
           "write": {"write_mode": mode}}
    if mode != "append":
        job["sync"] = {"primary_key": "id"}
    job.update(extra or {})
    return make_project({"jobs": {"load": {}}}, {"load": job})  # type: ignore[no-any-return]


async def run_once(root: Path, clock: ManualClock, **params: Any) -> str:
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        run = await service.trigger("load", params=params)
        assert run is not None
        await service.wait_idle()
        done = await service.run(run.id)
        assert done is not None and done.status is RunStatus.SUCCEEDED, done
        return done.id
    finally:
        await service.stop()


@pytest.mark.parametrize("mode", ["upsert", "append", "overwrite"])
async def test_rollback_restores_the_target_and_the_checkpoint(
        make_project: Any, clock: ManualClock, mode: str, capsys: pytest.CaptureFixture[str]
        ) -> None:
    root = project(make_project, mode)
    await run_once(root, clock, v="a", new=3)
    before = target(root)
    second = await run_once(root, clock, v="changed", new=4)
    assert target(root) != before
    assert await asyncio.to_thread(main, ["rollback", second, "-p", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"rolled back run {second} of job load" in out and "checkpoint" in out
    assert target(root) == before
    assert await asyncio.to_thread(main, ["runs", "show", second, "-p", str(root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["rolled_back_at"] is not None and "rolled back" in shown["note"]
    assert any("rolled back" in line["message"] for line in shown["logs"])


async def test_rollback_of_the_run_that_created_the_table_drops_it_and_columns_go_too(
        make_project: Any, clock: ManualClock) -> None:
    root = project(make_project)
    first = await run_once(root, clock, v="a", new=3)
    before = target(root)
    job = root / "jobs" / "load.yaml"
    job.write_text(job.read_text().replace("n: 2.0", "n: 2.0\n    extra: 7"))
    second = await run_once(root, clock, v="x", new=5)
    assert "extra" in target(root)["columns"]
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        with pytest.raises(RollbackRefused, match=f"run {second} of job load ran after"):
            await service.rollback(first)
        result = await service.rollback(second)
        assert result.reports[0].columns_dropped == ["extra"]
        assert target(root) == before
        await service.rollback(first)
        assert target(root)["tables"] == [] and target(root)["state"] == []
        with pytest.raises(RollbackRefused, match="rolled back already"):
            await service.rollback(first)
    finally:
        await service.stop()


async def test_a_target_that_cannot_revert_is_refused_and_left_alone(
        make_project: Any, clock: ManualClock, capsys: pytest.CaptureFixture[str]) -> None:
    job = {"source": {"type": "memory", "rows": [{"id": 1}]},
           "sink": {"type": "jsonl", "path": "../out/events.jsonl"}}
    root = make_project({"jobs": {"load": {}}}, {"load": job})
    run_id = await run_once(root, clock)
    written = (root / "out" / "events.jsonl").read_text()
    assert await asyncio.to_thread(main, ["rollback", run_id, "-p", str(root)]) == 1
    err = capsys.readouterr().err
    assert "cannot roll back" in err and "sink (type jsonl) cannot take back" in err
    assert "nothing was changed" in err
    assert (root / "out" / "events.jsonl").read_text() == written


async def test_journal_retention_forgets_prior_values_and_kept_tables(
        make_project: Any, clock: ManualClock) -> None:
    root = project(make_project, "overwrite")
    await run_once(root, clock, v="a", new=3)
    second = await run_once(root, clock, v="b", new=4)
    conn = sqlite3.connect(root / "out" / "t.db")
    kept = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE "
                                       "'\\_etlsync\\_prev\\_%' ESCAPE '\\'")]
    conn.close()
    assert len(kept) == 1  # the second overwrite kept the table it replaced (the first made it)
    from etlsync.service.rollback import forget_journals

    service = Service(load_project(root), clock=clock)
    await service.store.open()
    try:
        await forget_journals(service.project, service.store, clock.now() + 1)
        run = await service.store.get_run(second)
        assert run is not None and not run.journal and "journal expired" in (run.note or "")
    finally:
        await service.store.close()
    conn = sqlite3.connect(root / "out" / "t.db")
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE "
                                       "'\\_etlsync\\_prev\\_%' ESCAPE '\\'")] == []
    conn.close()
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        with pytest.raises(RollbackRefused, match="did not record what it changed"):
            await service.rollback(second)
    finally:
        await service.stop()
