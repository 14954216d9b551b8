"""Exactly-once under kill -9: the position is written in each batch's transaction, so however
often the loading process dies, the final target equals the source row for row."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
N = 60_000


async def run_worker(args: list[str], kill: Callable[[], Awaitable[None]] | None) -> int | None:
    """Run the worker to the end, or until ``kill()`` returns; then SIGKILL it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.postgres.load_worker", *args, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    if kill is None:
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
        return proc.returncode
    waiter = asyncio.ensure_future(proc.wait())
    trigger = asyncio.ensure_future(kill())
    await asyncio.wait([waiter, trigger], return_when=asyncio.FIRST_COMPLETED)
    trigger.cancel()
    if not waiter.done():
        os.kill(proc.pid, signal.SIGKILL)
    await waiter
    return proc.returncode


def after_progress(conn: asyncpg.Connection, table: str, rng: random.Random,
                   sql: str = "", max_delay: float = 0.25) -> Callable[[], Awaitable[None]]:
    """Wait until the target grew past what it held (the worker is mid-load), then a random
    extra delay of up to ``max_delay`` seconds: kills land at different points of the load
    (keep it short against a fast loader, or the load ends before enough kills land)."""

    async def trigger() -> None:
        start = await progress(conn, table)
        for _ in range(400):
            if await progress(conn, table) > start:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.0, max_delay))

    return trigger


async def progress(conn: asyncpg.Connection, table: str) -> int:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'public."{table}"')
    return int(await conn.fetchval(f'SELECT count(*) FROM "{table}"')) if exists else 0


@pytest.mark.slow
async def test_kill_9_during_passthrough_copy_resumes_exactly(
        pg_dsn: str, conn: asyncpg.Connection, table: str, tmp_path: Path) -> None:
    n = 40_000
    path = tmp_path / "rows.csv"
    lines = ["id,name,note"] + [f'{i},"name, {i}","line\nbreak ""{i}"""' for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, name text, note text)')
    rng = random.Random(9)
    kills = 0
    for _ in range(4):
        code = await run_worker(["passthrough", pg_dsn, table, "0", str(path)],
                                after_progress(conn, table, rng))
        kills += code == -signal.SIGKILL
    await run_worker(["passthrough", pg_dsn, table, "0", str(path)], None)
    got = await conn.fetch(f'SELECT id, name, note FROM "{table}" ORDER BY id')
    assert [r["id"] for r in got] == list(range(n))   # the primary key rejects duplicates
    assert got[123]["name"] == "name, 123" and got[123]["note"] == 'line\nbreak "123"'
    assert kills >= 3


@pytest.mark.slow
async def test_kill_9_during_arrow_load_never_duplicates_or_loses_rows(
        pg_dsn: str, conn: asyncpg.Connection, table: str, tmp_path: Path) -> None:
    """The arrow path (``CsvSource(engine="arrow")`` -> ``Cast`` -> COPY as CSV) killed at
    random points, then run to the end: every row once, values as in the file."""
    pytest.importorskip("pyarrow")
    n = 60_000
    path = tmp_path / "rows.csv"
    lines = ["id,name,price,at"] + [
        f'{i},"n, {i} ""q""",{i % 1000}.{i % 100:02d},2024-01-01 00:{i // 60 % 60:02d}:{i % 60:02d}'
        for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    await conn.execute(f'CREATE TABLE "{table}" (id bigint, name text, price numeric(8,2), '
                       "at timestamp)")
    rng = random.Random(11)
    kills, seen = 0, []
    for _ in range(8):
        code = await run_worker(["arrow", pg_dsn, table, "0", str(path)],
                                after_progress(conn, table, rng, max_delay=0.05))
        kills += code == -signal.SIGKILL
        seen.append(await progress(conn, table))
        if seen[-1] == n:
            break
    await run_worker(["arrow", pg_dsn, table, "0", str(path)], None)
    assert kills >= 3 and len(set(seen)) > 2, seen  # killed at different points
    got = await conn.fetch(f'SELECT id, name, price::text, at::text FROM "{table}" ORDER BY id')
    assert [r["id"] for r in got] == list(range(n))  # no duplicate, no gap
    assert tuple(got[1234]) == (1234, 'n, 1234 "q"', "234.34", "2024-01-01 00:20:34")
