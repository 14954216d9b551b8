"""The documented example and the benchmark script run as users run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_csv_to_sqlite_example_runs(tmp_path: Path) -> None:
    proc = _run(["examples/csv_to_sqlite.py", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert "first run: 300 rows; second run: 2 rows" in proc.stdout
    assert "orders table: 302 rows" in proc.stdout


def test_sqlite_load_benchmark_reports_every_variant(tmp_path: Path) -> None:
    proc = _run(["benchmarks/sqlite_load.py", "--rows", "2000", "--json", "--workdir",
                 str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    by_name = {r["name"]: r for r in lines}
    assert set(by_name) == {"etlsync", "etlsync_json_batches", "python_loop", "sqlite3_cli"}
    for r in lines:
        if "error" in r:  # only a missing sqlite3 CLI may be absent
            assert r["name"] == "sqlite3_cli"
            continue
        assert r["rows"] == 2000 and r["rows_loaded_ok"] is True
        assert r["seconds"] > 0 and r["rows_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert "ratio_vs_sqlite3_cli" in r and "ratio_vs_python_loop" in r
