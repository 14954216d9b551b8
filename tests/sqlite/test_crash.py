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

from etlsync.checkpoints.sqlite import read_state
from etlsync.connectors.files import is_end_of_pass

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
        return is_end_of_pass(read_state(conn, "crash"))
    finally:
        conn.close()


def _run(args: list[str], kill_after: float | None) -> tuple[bool, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(JOB), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return False, time.monotonic() - t0
    assert proc.returncode == 0, err
    assert "completed" in out
    return True, time.monotonic() - t0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_kill9_many_times_then_target_equals_source(tmp_path: Path, mode: str,
                                                     unique_name: str) -> None:
    n = 100_000
    src = tmp_path / f"{unique_name}.csv"
    expected = _write_csv(src, n)
    db = tmp_path / "target.db"
    store = db if mode == "append" else tmp_path / "state.db"
    args = [str(src), str(db), str(store), mode, "500"]
    rng = random.Random(f"{unique_name}-{mode}")
    kills, completed = 0, False
    for _ in range(8):
        completed, _ = _run(args, rng.uniform(0.35, 1.3))
        if completed or _complete(store):
            completed = True
            break
        kills += 1
    if not completed:
        completed, _ = _run(args, None)
    assert completed and kills >= 5, f"only {kills} kills landed mid-run"
    conn = sqlite3.connect(db)
    got = conn.execute("SELECT id, name, amount, note FROM t ORDER BY rowid").fetchall()
    conn.close()
    if mode == "append":
        assert got == expected  # same rows, same order: none lost, none duplicated
    else:
        assert sorted(got, key=lambda r: int(r[0])) == expected
    assert _complete(store)
