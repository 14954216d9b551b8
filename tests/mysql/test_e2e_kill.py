"""End to end: MariaDB table -> SQLite (upserts, checkpoint in the target) under concurrent
inserts/updates/deletes, with the pipeline process killed (SIGKILL) at random points; the
target equals the source afterwards. Runs examples/mysql_cdc_to_sqlite.py."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.mysql.helpers import execute, fetch, options

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mysql_cdc_to_sqlite.py"


def _target_rows(path: Path, table: str) -> list[tuple[Any, ...]] | None:
    try:
        with sqlite3.connect(path) as conn:
            return sorted(conn.execute(f'SELECT id, v, s FROM "{table}"').fetchall())
    except sqlite3.OperationalError:
        return None


@pytest.mark.slow
async def test_kill9_loop_target_equals_source(mysql_params: dict[str, Any], unique_name: str,
                                               tmp_path: Path) -> None:
    pytest.importorskip("etlsync.connectors.sqlite")
    opts = options(mysql_params)
    t = unique_name
    n0 = 20_000
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, v int, s varchar(40))")
    for start in range(0, n0, 5000):
        await execute(opts, f"INSERT INTO `{t}` VALUES " + ",".join(
            f"({i}, {i}, 'row {i}')" for i in range(start, start + 5000)))
    target = tmp_path / "target.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, str(EXAMPLE), "--host", str(opts.host), "--port", str(opts.port),
           "--user", opts.user, "--database", str(opts.database), "--table", t,
           "--target", str(target), "--chunk-rows", "2000"]
    stop = asyncio.Event()
    rng = random.Random(20261122)

    async def writer() -> None:
        next_id = n0
        while not stop.is_set():
            stmts = ["START TRANSACTION"]
            for _ in range(rng.randint(1, 20)):
                kind = rng.random()
                if kind < 0.4:
                    stmts.append(f"INSERT INTO `{t}` VALUES ({next_id}, 0, 'new {next_id}')")
                    next_id += 1
                elif kind < 0.8:
                    stmts.append(f"UPDATE `{t}` SET v = v + 1, s = 'upd' "
                                 f"WHERE id = {rng.randrange(next_id)}")
                else:
                    stmts.append(f"DELETE FROM `{t}` WHERE id = {rng.randrange(next_id)}")
            stmts.append("COMMIT")
            await execute(opts, *stmts)
            await asyncio.sleep(0.005)

    w = asyncio.create_task(writer())
    kills = 0
    try:
        for _ in range(8):
            proc = await asyncio.create_subprocess_exec(
                *cmd, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            await asyncio.sleep(rng.uniform(0.6, 2.5))
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            await proc.wait()
            assert proc.returncode in (-signal.SIGKILL, 0), (await proc.stderr.read()).decode()[-2000:]
    finally:
        stop.set()
        await w
    # a last run catches up; stop it gracefully once the target equals the source
    expected = sorted(tuple(r) for r in await fetch(opts, f"SELECT id, v, s FROM `{t}`",
                                                    dict_rows=False))
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        for _ in range(300):
            await asyncio.sleep(0.1)
            if _target_rows(target, t) == expected:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    assert kills >= 6
    got = _target_rows(target, t)
    assert got is not None and len(got) == len(expected)
    assert got == expected
