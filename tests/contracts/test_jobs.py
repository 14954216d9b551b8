"""Jobs as a user runs them: ``etlsync run JOB.yaml`` in a process of its own.

- kill -9: a CSV -> transactional sink append job with the DEFAULT checkpoint (no
  ``checkpoint:`` section: the sink owns it), killed with SIGKILL at random points of the load
  several times and then run to the end, leaves every row in the target exactly once.
- SIGTERM: a clean stop of a streaming job exits 0 with status ``stopped`` and the checkpoint
  committed.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from etlsync.core.capabilities import Capability, has
from tests.contracts.conftest import SinkCase
from tests.contracts.harness import table_of

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
ROWS = {"sqlite": 20_000, "postgres": 30_000, "mysql": 30_000, "mongo": 3_000}
"""Rows per sink type: a load of a few seconds (SecantusDB is slow), in small transactions so
that the kills land near their points."""
BATCH = {"mongo": 100, "sqlite": 250}
"""Rows per batch (one transaction each; default 50)."""
KILLS = {"mongo": 4}
"""Kills per sink type (default 6). A MongoDB run after a kill waits for the server to abort
the dead run's open transaction (the test server's transaction lifetime: 5 s)."""


def etlsync_run(job: Path, *args: str) -> subprocess.Popen[bytes]:
    """``etlsync run JOB`` in a process of its own (``poll()``/``waitpid`` based: it does not
    depend on the event loop's child watcher)."""
    return subprocess.Popen(
        [sys.executable, "-m", "etlsync.cli", "run", str(job), "--no-progress", *args],
        cwd=job.parent, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> tuple[bytes, bytes]:
    """Wait for ``proc`` without blocking the event loop; its output."""
    return await asyncio.to_thread(proc.communicate, timeout=timeout)


def write_job(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def write_csv(path: Path, n: int) -> list[dict[str, str]]:
    rows = [{"id": str(i), "name": f"name, {i} \"q\"", "amount": f"{i % 997}.{i % 100:02d}"}
            for i in range(n)]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["id", "name", "amount"])
        w.writeheader()
        w.writerows(rows)
    return rows


async def _kill_at(sink: SinkCase, proc: subprocess.Popen[bytes], rows: int,
                  rng: random.Random) -> bool:
    """SIGKILL ``proc`` once the target holds ``rows`` rows (plus a random few ms); False if
    it finished first."""
    for _ in range(6000):
        if proc.poll() is not None:
            return False
        if await sink.target.count(sink.table) >= rows:
            await asyncio.sleep(rng.uniform(0, 0.02))
            break
        await asyncio.sleep(0.005)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    await finish(proc)
    return proc.returncode == -signal.SIGKILL


async def test_kill_9_then_a_full_run_leaves_every_row_exactly_once(sink: SinkCase) -> None:
    """The issue's finding: a CSV -> PostgreSQL append job with the default checkpoint was
    at-least-once (duplicates after kills); the sink's own transactional checkpoint makes it
    exactly-once. The same for SQLite, MySQL/MariaDB and MongoDB (``state_collection``)."""
    if not has(sink.build(write_mode="append"), Capability.TRANSACTIONAL):
        pytest.skip("not transactional: at-least-once by contract")
    n = ROWS[sink.factory.id]
    expected = write_csv(sink.tmp / "rows.csv", n)
    spec = {"type": sink.factory.type, **sink.target.location(sink.table),
            **sink.factory.options, "write_mode": "append"}
    job = write_job(sink.tmp / "job.yaml", {
        "name": sink.table, "source": {"type": "csv", "path": "rows.csv"},
        "batch_size": BATCH.get(sink.factory.id, 50), "sink": spec})
    rng = random.Random(sink.factory.id)
    kills, seen, completed = 0, [], False
    points = sorted(rng.sample(range(n // 20, n * 9 // 10), KILLS.get(sink.factory.id, 6)))
    for point in points:  # kill points spread over the load, in order
        if await sink.target.count(sink.table) >= point:
            continue  # the last run got past it before it died
        proc = etlsync_run(job)
        if not await _kill_at(sink, proc, point, rng):
            _, err = await finish(proc)  # it finished the load before the kill
            assert proc.returncode == 0, err.decode()[-2000:]
            completed = True
            break
        kills += 1
        seen.append(await sink.target.count(sink.table))
        if await _pass_complete(sink):  # the kill landed after the final commit
            completed = True
            break
    if not completed:  # (a run after a complete pass would start a new one: append again)
        proc = etlsync_run(job, "--json")
        out, err = await finish(proc)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert json.loads(out.decode().splitlines()[-1])["status"] == "completed"
    assert kills >= min(4, KILLS.get(sink.factory.id, 6)) and len(set(seen)) >= 3, seen
    cols = ("id", "name", "amount")
    assert table_of(await sink.target.rows(sink.table), cols) == table_of(expected, cols)
    assert await _pass_complete(sink)


async def _pass_complete(sink: SinkCase) -> bool:
    store = sink.build(write_mode="append").checkpoint_store()
    assert store is not None
    try:
        checkpoint = await store.load(sink.table)
    finally:
        await store.close()
    return checkpoint is not None and not checkpoint.pass_open


def _state(db: Path, pipeline: str) -> Any:
    from etlsync.connectors.sqlite.checkpoint import read_state

    if not db.exists():
        return None
    conn = sqlite3.connect(db, timeout=10)
    try:
        return read_state(conn, pipeline)
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


async def _sigterm_when_committed(job: Path, db: Path, name: str, want: Any) -> dict[str, Any]:
    proc = etlsync_run(job, "--json")
    for _ in range(3000):
        state = _state(db, name)
        if (state is not None and state.position == want) or proc.poll() is not None:
            break
        await asyncio.sleep(0.02)
    assert proc.poll() is None, (await finish(proc))[1].decode()[-2000:]
    proc.send_signal(signal.SIGTERM)
    out, err = await finish(proc, 60)
    assert proc.returncode == 0, (proc.returncode, err.decode()[-2000:])
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_sigterm_stops_a_streaming_job_cleanly_with_exit_0(tmp_path: Path) -> None:
    """A service manager's stop (SIGTERM) of a job that runs until stopped: drained, the
    checkpoint committed, status ``stopped``, exit code 0 (it was 130)."""
    rows = [{"id": i, "name": f"n{i}"} for i in range(50)]
    job = write_job(tmp_path / "follow.yaml", {
        "name": "follow", "source": {"type": "memory", "rows": rows, "follow": True},
        "batch_size": 10, "sink": {"type": "sqlite", "path": "out.db", "table": "t"}})
    result = await _sigterm_when_committed(job, tmp_path / "out.db", "follow", 50)
    assert result["status"] == "stopped" and result["rows_written"] == 50
    assert result["committed_position"] == 50
    state = _state(tmp_path / "out.db", "follow")
    assert state is not None and state.position == 50 and state.pass_open


@pytest.mark.integration
async def test_sigterm_stops_a_postgres_cdc_job_with_exit_0(tmp_path: Path, pg_dsn: str,
                                                            unique_name: str) -> None:
    import asyncpg

    from tests.postgres_cdc.conftest import Names  # drops the slot, publication and table

    conn = await asyncpg.connect(pg_dsn)
    slot, pub = f"{unique_name}_slot", f"{unique_name}_pub"
    await conn.execute(f'CREATE TABLE "{unique_name}" (id int PRIMARY KEY, name text)')
    await conn.execute(f'INSERT INTO "{unique_name}" SELECT i, \'n\' || i '
                       "FROM generate_series(1, 30) i")
    job = write_job(tmp_path / "cdc.yaml", {
        "name": unique_name,
        "source": {"type": "postgres_cdc", "connection": pg_dsn, "slot": slot,
                   "publication": pub, "tables": [f"public.{unique_name}"],
                   "status_interval": 0.5},
        "sink": {"type": "sqlite", "path": "out.db", "table": "t", "write_mode": "upsert",
                 "primary_key": ["id"]}})
    try:
        proc = etlsync_run(job, "--json")
        db = tmp_path / "out.db"
        for _ in range(3000):  # the snapshot landed and the stream runs: add a change
            if proc.poll() is not None or _count(db) == 30:
                break
            await asyncio.sleep(0.02)
        await conn.execute(f'INSERT INTO "{unique_name}" VALUES (31, \'streamed\')')
        for _ in range(3000):
            if proc.poll() is not None or _count(db) == 31:
                break
            await asyncio.sleep(0.02)
        assert proc.poll() is None, (await finish(proc))[1].decode()[-2000:]
        await asyncio.sleep(0.3)  # let the checkpoint of the streamed change commit
        proc.send_signal(signal.SIGTERM)
        out, err = await finish(proc, 60)
        assert proc.returncode == 0, (proc.returncode, err.decode()[-2000:])
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["status"] == "stopped" and result["commits"] >= 1
        state = _state(db, unique_name)
        assert state is not None and state.position == result["committed_position"]
        assert _count(db) == 31
    finally:
        await conn.close()
        await Names(unique_name).cleanup(pg_dsn)


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=10)
    try:
        return int(conn.execute('SELECT count(*) FROM "t"').fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
