"""The documented example runs against the real server and prints what it claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _run(example: str, pg_dsn: str, prefix: str) -> list[str]:
    """The lines ``examples/<example>`` prints when run against the test server."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example), prefix],
        env={**os.environ, "ETLSYNC_PG_DSN": pg_dsn}, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_postgres_sync_example_runs(pg_dsn: str, unique_name: str) -> None:
    lines = _run("postgres_sync.py", pg_dsn, unique_name)
    assert lines == ["first run read 2000 rows", "second run read 10 rows",
                     "target has 2000 rows, 10 paid"]


def test_csv_to_postgres_arrow_example_runs(pg_dsn: str, unique_name: str) -> None:
    # 5,000 orders: price i % 100 + 0.50, quantity i % 5 + 1
    assert _run("csv_to_postgres_arrow.py", pg_dsn, unique_name) == [
        "read 5000 rows", "price is numeric and ordered_at is timestamp without time zone",
        "order total 760000.00"]
