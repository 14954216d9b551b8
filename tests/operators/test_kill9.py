"""kill -9 at random points of a windowed aggregation into SQLite, then restart: the target
ends equal to the same aggregation computed over the whole input by DuckDB (nothing lost,
nothing counted twice)."""

from __future__ import annotations

import csv
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etlsync.connectors.sqlite.checkpoint import read_state

duckdb = pytest.importorskip("duckdb")

JOB = Path(__file__).with_name("agg_crash_job.py")
ROOT = Path(__file__).resolve().parents[2]
SQL = ("SELECT k, {window} count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi, "
       "count(DISTINCT v) AS d FROM read_csv('{path}', header=true, "
       "columns={{'k': 'VARCHAR', 'v': 'BIGINT', 'ts': 'BIGINT'}}) GROUP BY ALL")


def _write_csv(path: Path, n: int, rng: random.Random) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["k", "v", "ts"])
        for i in range(n):  # event times up to 20 s out of order (lateness allows 30 s)
            w.writerow([f"key{rng.randrange(6)}", rng.randrange(1000), i // 20 + rng.randrange(20)])


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM agg").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def _run(args: list[str], db: Path, kill_at: int | None, rng: random.Random,
         kill_after: float | None = None) -> bool:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, str(JOB), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "running"
    started = time.monotonic()
    while proc.poll() is None and (kill_at is not None or kill_after is not None):
        if (kill_at is not None and _count(db) >= kill_at) or (
                kill_after is not None and time.monotonic() - started >= kill_after):
            time.sleep(rng.uniform(0, 0.05))
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == -signal.SIGKILL:
        return False
    assert proc.returncode == 0, err
    assert "completed" in out
    return True


def _complete(db: Path) -> bool:
    if not db.exists():
        return False
    conn = sqlite3.connect(db, timeout=30)
    try:
        checkpoint = read_state(conn, "agg")
        return checkpoint is not None and not checkpoint.pass_open
    finally:
        conn.close()


@pytest.mark.parametrize("mode,every", [("close", 1), ("close", 8), ("changelog", 8),
                                        ("whole", 8)])
def test_kill9_then_restart_equals_duckdb_over_the_whole_input(
        tmp_path: Path, mode: str, every: int, unique_name: str) -> None:
    rng = random.Random(f"{unique_name}-{mode}-{every}")
    n = 60_000
    src = tmp_path / "events.csv"
    _write_csv(src, n, rng)
    db = tmp_path / "target.db"
    args = [str(src), str(db), mode, "25" if mode == "whole" else "100", str(every)]
    kills, completed = 0, False
    expected_windows = n // 20 // 10 * 6
    for i in range(5):
        if mode == "whole":  # nothing is written before the end: kill on a timer
            done = _run(args, db, None, rng, kill_after=rng.uniform(0.02, 0.25))
        else:
            done = _run(args, db, rng.randrange(expected_windows * i // 6 + 1,
                                                expected_windows * (i + 1) // 6), rng)
        if done or _complete(db):
            completed = True
            break
        kills += 1
    if not completed:
        assert _run(args, db, None, rng)
    assert kills >= 3, f"only {kills} kills landed before the run completed"
    window = "" if mode == "whole" else "(ts // 10) * 10 AS window_start,"
    want = duckdb.sql(SQL.format(window=window, path=src)).fetchall()
    cols = "k, n, s, lo, hi, d" if mode == "whole" else "k, window_start, n, s, lo, hi, d"
    conn = sqlite3.connect(db)
    got = conn.execute(f"SELECT {cols} FROM agg").fetchall()
    conn.close()
    assert len(got) == len(set(got)), "a window was written twice"
    assert sorted(got) == sorted(want)
