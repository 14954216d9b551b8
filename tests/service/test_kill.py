"""kill -9 of ``etlsync serve`` during runs: the history says what happened, no run stays
``running``, and the job runs again from its checkpoint, exactly once, its target correct.
One instance on SQLite here; two instances on PostgreSQL in test_high_availability.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import yaml

from etlsync.cli import main
from etlsync.service import RunStatus
from tests.service.serve_process import ServeProcess, history, wait_for

ROWS = 60


def write_project(root: Path, extra: dict[str, Any] | None = None) -> None:
    (root / "jobs").mkdir(parents=True)
    project = {"http": {"listen": "127.0.0.1:0"}, "state": {"lease_ttl": "4s",
                                                           "heartbeat": "1s"},
               "jobs": {"load": {}}}
    project.update(extra or {})
    (root / "etlsync-project.yaml").write_text(yaml.safe_dump(project))
    job = {"source": {"type": "memory", "rows": [{"id": i, "v": f"row {i}"} for i in range(ROWS)],
                      "batch_size": 3},
           # the slow second sink makes the run last a few seconds; the SQLite target owns
           # the checkpoint (exactly-once) and writes each batch after it
           "sinks": [{"type": "sqlite", "path": "../out/target.db", "table": "t"},
                     {"type": "collect", "delay": 0.15}]}
    (root / "jobs" / "load.yaml").write_text(yaml.safe_dump(job))


def target_rows(root: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(root / "out" / "target.db")
    try:
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


async def test_kill9_during_a_run_is_recorded_and_the_job_runs_again_once(
        tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write_project(root)
    first = ServeProcess(root, "first")
    await first.ready()
    run = await first.trigger("load")

    async def partly_written() -> bool:
        runs = await history(root)
        if not runs or runs[0].status is not RunStatus.RUNNING:
            return False
        return (root / "out" / "target.db").exists() and len(target_rows(root)) >= 9
    await wait_for(partly_written, what="the run to be part-way")
    first.kill9()
    written_before_kill = len(target_rows(root))
    assert 0 < written_before_kill < ROWS
    (killed,) = await history(root)
    assert killed.id == run["id"] and killed.status is RunStatus.RUNNING  # as it was left

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await asyncio.to_thread(main, ["runs", "-p", str(root), "--json"]) == 0
    shown = json.loads(out.getvalue())
    assert shown[0]["effective_status"] == "running (instance gone: lost)"

    second = ServeProcess(root, "second")
    await second.ready()

    async def recovered() -> list[Any] | None:
        runs = await history(root)
        done = len(runs) == 2 and runs[1].status.finished
        return runs if done else None
    lost, again = await wait_for(recovered, what="the recovery run")
    assert second.terminate() == 0
    assert lost.id == run["id"] and lost.status is RunStatus.LOST
    assert "instance first stopped renewing its lease" in (lost.error or "")
    assert again.trigger == "recovery" and again.retry_of == lost.id
    assert again.status is RunStatus.SUCCEEDED and again.instance == "second"
    assert again.checkpoint_before is not None  # it resumed where the killed run committed
    assert target_rows(root) == [(i, f"row {i}") for i in range(ROWS)]  # each row once
    assert again.rows_written == ROWS - written_before_kill
    assert not [r for r in await history(root) if not r.status.finished]
