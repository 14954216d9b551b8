"""End to end PostgreSQL -> PostgreSQL with upserts and the exactly-once checkpoint, under
concurrent inserts, updates, deletes and key changes (with TOASTed values), the pipeline
killed with SIGKILL at random points of the snapshot and the stream: afterwards the target
equals the source, row for row. The pipeline is examples/postgres_cdc.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.postgres_cdc.conftest import Names

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "postgres_cdc.py"
ROWS = 20_000
KILLS = 8


def _big(rnd: random.Random) -> str:
    return "".join(f"{rnd.getrandbits(32):08x}" for _ in range(rnd.randint(600, 2500)))


async def _writer(dsn: str, table: str, stop: asyncio.Event, seed: int) -> int:
    rnd = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    next_id, txs = ROWS + 1, 0
    try:
        while not stop.is_set():
            async with conn.transaction():
                for _ in range(rnd.randint(1, 8)):
                    r, k = rnd.random(), rnd.randint(1, next_id)
                    if r < 0.30:
                        doc = _big(rnd) if rnd.random() < 0.3 else "small"
                        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2, $3, $4)",
                                           next_id, f"i{txs}", doc, txs)
                        next_id += 1
                    elif r < 0.60:  # doc (often TOASTed) unchanged: not sent by the server
                        await conn.execute(f"UPDATE {table} SET v = $2, n = n + 1 WHERE id = $1",
                                           k, f"u{txs}")
                    elif r < 0.75:
                        await conn.execute(f"UPDATE {table} SET doc = $2 WHERE id = $1", k,
                                           _big(rnd))
                    elif r < 0.80:  # primary key change
                        await conn.execute(f"UPDATE {table} SET id = $2 WHERE id = $1", k,
                                           next_id)
                        next_id += 1
                    else:
                        await conn.execute(f"DELETE FROM {table} WHERE id = $1", k)
            txs += 1
            await asyncio.sleep(rnd.random() * 0.01)
    finally:
        await conn.close()
    return txs


def _start(dsn: str, names: Names, target: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--dsn", dsn, "--source", names.table, "--target",
         target, "--slot", names.slot, "--publication", names.publication],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(EXAMPLE.parents[1] / "src")})


_SNAPSHOT = "SELECT id, v, n, md5(doc) AS doc FROM {} ORDER BY id"


@pytest.mark.slow

async def _position(pg: asyncpg.Connection, pipeline: str) -> str | None:
    """The pipeline's checkpoint as text; None before the pipeline made its first one (on a
    fresh database the checkpoint table itself may not exist yet)."""
    if await pg.fetchval("SELECT to_regclass('_etlsync_state')") is None:
        return None
    pos: str | None = await pg.fetchval(
        "SELECT position::text FROM _etlsync_state WHERE pipeline = $1", pipeline)
    return pos

async def test_kill_9_during_snapshot_and_stream_target_equals_source(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    src, dst = names.table, names.table + "_copy"
    names.tables.append(dst)
    await pg.execute(f"CREATE TABLE {src} (id int PRIMARY KEY, v text, doc text, n int)")
    await pg.execute(f"ALTER TABLE {src} ALTER COLUMN doc SET STORAGE EXTERNAL")
    await pg.execute(f"INSERT INTO {src} SELECT g, 'init', CASE WHEN g % 100 = 0 THEN "
                     f"(SELECT string_agg(md5(g::text || x::text), '') FROM "
                     f"generate_series(1, 200) x) ELSE 'small' END, 0 "
                     f"FROM generate_series(1, {ROWS}) g")
    await pg.execute(f"CREATE TABLE {dst} (id int PRIMARY KEY, v text, doc text, n int)")
    rnd = random.Random(7)
    stop = asyncio.Event()
    writer = asyncio.ensure_future(_writer(pg_dsn, src, stop, seed=11))
    kills_in_snapshot = 0
    try:
        for i in range(KILLS):
            proc = _start(pg_dsn, names, dst)
            if i == 0:  # the first kill right after the first snapshot chunk is committed
                for _ in range(300):
                    await asyncio.sleep(0.05)
                    pos = await _position(pg, names.slot)
                    if pos is not None:
                        break
            else:  # early kills land in the snapshot, later ones in the stream
                await asyncio.sleep(0.8 + rnd.random() * (1.0 if i < 3 else 2.5))
            pos = await _position(pg, names.slot)
            kills_in_snapshot += pos is None or "snapshot" in pos
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        stop.set()
        txs = await writer
        proc = _start(pg_dsn, names, dst)
        try:
            expected = await pg.fetch(_SNAPSHOT.format(src))
            deadline = time.monotonic() + 60
            actual = await pg.fetch(_SNAPSHOT.format(dst))
            while actual != expected and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
                await asyncio.sleep(0.5)
                actual = await pg.fetch(_SNAPSHOT.format(dst))
        finally:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await writer
        with contextlib.suppress(Exception):
            await pg.execute("DELETE FROM _etlsync_state WHERE pipeline = $1", names.slot)
    assert txs > 50
    assert kills_in_snapshot >= 1
    assert len(expected) > ROWS // 2
    missing = {r["id"] for r in expected} - {r["id"] for r in actual}
    extra = {r["id"] for r in actual} - {r["id"] for r in expected}
    assert not missing and not extra, (sorted(missing)[:10], sorted(extra)[:10])
    assert actual == expected


async def test_example_copies_then_streams(pg: asyncpg.Connection, names: Names,
                                           pg_dsn: str) -> None:
    src, dst = names.table, names.table + "_copy"
    names.tables.append(dst)
    await pg.execute(f"CREATE TABLE {src} (id int PRIMARY KEY, v text, doc text, n int)")
    await pg.execute(f"INSERT INTO {src} SELECT g, 'a', 'd', g FROM generate_series(1, 500) g")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--dsn", pg_dsn, "--source", src, "--target", dst,
        "--slot", names.slot, "--publication", names.publication,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(EXAMPLE.parents[1] / "src")})
    try:
        for _ in range(300):  # the snapshot created the target table
            await asyncio.sleep(0.1)
            if await pg.fetchval("SELECT to_regclass($1) IS NOT NULL", dst):
                break
        await pg.execute(f"UPDATE {src} SET v = 'b' WHERE id <= 10")
        await pg.execute(f"DELETE FROM {src} WHERE id > 490")
        expected = await pg.fetch(_SNAPSHOT.format(src))
        for _ in range(300):
            actual = await pg.fetch(_SNAPSHOT.format(dst))
            if actual == expected:
                break
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # a graceful stop: drain, commit, exit 0
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert out.decode().startswith("stopped:")
        assert actual == expected and len(actual) == 490
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await pg.execute("DELETE FROM _etlsync_state WHERE pipeline = $1", names.slot)
