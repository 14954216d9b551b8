"""Kill -9 a CSV -> SQLite run at random points, many times; the target ends equal to the source."""

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

JOB = Path(__file__).with_name("crash_job.py")
ROOT = Path(__file__).resolve().parents[2]


def _write_csv(path: Path, n: int) -> list[tuple[str, ...]]:
    rows = [(str(i), f"name {i}", f"{i % 997}.{i % 100:02d}", "x" * (i % 13)) for i in range(n)]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "amount", "note"])
        w.writerows(rows)
    return rows


def _complete(store: Path) -> bool:
    if not store.exists():
        return False
    conn = sqlite3.connect(store)
    try:
        checkpoint = read_state(conn, "crash")
        return checkpoint is not None and not checkpoint.pass_open
    finally:
        conn.close()


def _run(args: list[str], db: Path, kill_at: int | None, rng: random.Random,
         table: str = "t") -> bool:
    """Run the job; once the target holds ``kill_at`` rows (and a random few milliseconds
    more), kill -9 it. True if it completed first."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, str(JOB), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "running"
    while kill_at is not None and proc.poll() is None:
        if _count(db, table) >= kill_at:
            time.sleep(rng.uniform(0, 0.03))
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == -signal.SIGKILL:
        return False
    assert proc.returncode == 0, err
    assert "completed" in out
    return True


def _count(db: Path, table: str = "t") -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["upsert"])  # append (the sink's own checkpoint): the contract
# suite's kill -9 job test, tests/contracts/test_jobs.py
def test_kill9_many_times_then_target_equals_source(tmp_path: Path, mode: str,
                                                     unique_name: str) -> None:
    n = 100_000
    src = tmp_path / f"{unique_name}.csv"
    expected = _write_csv(src, n)
    db = tmp_path / "target.db"
    store = db if mode == "append" else tmp_path / "state.db"
    args = [str(src), str(db), str(store), mode, "500"]
    rng = random.Random(f"{unique_name}-{mode}")
    kill_points = sorted(rng.sample(range(n // 20, n * 9 // 10), 8))
    kills, completed = 0, False
    for kill_at in kill_points:
        if _run(args, db, kill_at, rng) or _complete(store):
            completed = True
            break
        kills += 1
    if not completed:
        completed = _run(args, db, None, rng)
    assert completed and kills >= 5, f"only {kills} kills landed before the run completed"
    conn = sqlite3.connect(db)
    got = conn.execute("SELECT id, name, amount, note FROM t ORDER BY rowid").fetchall()
    conn.close()
    if mode == "append":
        assert got == expected  # same rows, same order: none lost, none duplicated
    else:
        assert sorted(got, key=lambda r: int(r[0])) == expected
    assert _complete(store)


@pytest.mark.slow
def test_kill9_during_overwrite_keeps_the_old_table_until_the_swap(tmp_path: Path,
                                                                   unique_name: str) -> None:
    n = 60_000
    src = tmp_path / f"{unique_name}.csv"
    expected = _write_csv(src, n)
    db = tmp_path / "target.db"
    old = [(f"old{i}", "old", "0", "") for i in range(10)]
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id TEXT, name TEXT, amount TEXT, note TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", old)
    conn.commit()
    conn.close()
    args = [str(src), str(db), str(db), "overwrite", "500"]
    rng = random.Random(unique_name)
    kills = 0
    for _ in range(4):
        if (_run(args, db, rng.randrange(n // 20, n * 7 // 10), rng, "_etlsync_stage_t")
                or _complete(db)):  # the swap may commit just before the kill lands
            break
        kills += 1
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT * FROM t ORDER BY rowid").fetchall() == old
        conn.close()
    else:
        assert _run(args, db, None, rng)
    assert kills >= 2
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT * FROM t ORDER BY rowid").fetchall() == expected
    assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '_etlsync_stage%'"
                        ).fetchall() == []
    conn.close()
    assert _complete(db)
