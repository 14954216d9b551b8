"""The README's first command: ``etlsync run examples/quickstart.yaml`` (CSV -> SQLite,
incremental, upsert on id), run on a copy of the example so the tree stays clean."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from etlsync.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    """A copy of ``examples/`` (job + data set); returns the job file."""
    dest = tmp_path / "examples"
    dest.mkdir()
    shutil.copy(EXAMPLES / "quickstart.yaml", dest / "quickstart.yaml")
    shutil.copytree(EXAMPLES / "data", dest / "data")
    return dest / "quickstart.yaml"


def run_json(job: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = main(["run", str(job), "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result: dict[str, object] = json.loads(out)
    return result


def target(job: Path) -> dict[int, tuple[object, ...]]:
    conn = sqlite3.connect(job.parent / "out" / "quickstart.db")
    try:
        rows = conn.execute("SELECT id, customer_name, status, quantity, price, order_date, "
                            "updated_at FROM orders ORDER BY id").fetchall()
    finally:
        conn.close()
    return {r[0]: r[1:] for r in rows}


def test_quickstart_runs_incrementally_and_handles_cursor_ties(
        quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source_rows = (quickstart.parent / "data" / "orders.csv").read_text().splitlines()[1:]
    test_rows = sum(1 for r in source_rows if r.split(",")[2] == "test")
    first = run_json(quickstart, capsys)
    assert first["status"] == "completed"
    assert first["rows_read"] == len(source_rows) == 300
    assert first["rows_filtered"] == test_rows and first["rows_rejected"] == 0
    stored = target(quickstart)
    assert len(stored) == 300 - test_rows == first["rows_written"]
    one = stored[1]
    assert one == ("Acme GmbH", "paid", 9, "258.76", "2024-02-29", "2024-03-01 08:42:00")
    assert Decimal(str(one[3])) == Decimal("258.76")

    second = run_json(quickstart, capsys)
    assert (second["rows_read"], second["rows_written"]) == (0, 0)
    assert target(quickstart) == stored

    last_cursor = source_rows[-1].rsplit(",", 1)[1]
    with (quickstart.parent / "data" / "orders.csv").open("a") as f:
        f.write(source_rows[-1] + "\n")  # a key already delivered at the watermark: skipped
        f.write(f"301,Tie Co,paid,2,10.00,2024-03-04,{last_cursor}\n")  # a tie: new key
        f.write("5,Updated Ltd,shipped,3,99.99,2024-03-01,2024-03-05 09:00:00\n")  # an update
        f.write("302,Test Co,test,1,1.00,2024-03-05,2024-03-05 09:00:00\n")  # filtered out
    third = run_json(quickstart, capsys)
    assert (third["rows_read"], third["rows_written"], third["rows_filtered"]) == (3, 2, 1)
    after = target(quickstart)
    assert after[301] == ("Tie Co", "paid", 2, "10.00", "2024-03-04", last_cursor)
    assert after[5] == ("Updated Ltd", "shipped", 3, "99.99", "2024-03-01",
                        "2024-03-05 09:00:00")
    assert 302 not in after
    assert set(after) == set(stored) | {301}
    assert run_json(quickstart, capsys)["rows_read"] == 0


def test_quickstart_dry_run_writes_nothing(quickstart: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(quickstart), "--dry-run", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "source schema (orders):" in out and "after operators (orders):" in out
    assert "price          decimal" in out
    assert "first 2 row(s) after operators:" in out and "Decimal('258.76')" in out
    assert "dry run: nothing was written" in out
    assert sorted(p.name for p in quickstart.parent.iterdir()) == ["data", "quickstart.yaml"]


def test_readme_command_runs_the_installed_console_script(quickstart: Path) -> None:
    exe = shutil.which("etlsync")
    cmd = [exe] if exe else [sys.executable, "-m", "etlsync.cli"]
    proc = subprocess.run([*cmd, "run", "examples/quickstart.yaml"], cwd=quickstart.parent.parent,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "quickstart: completed: 300 rows read" in proc.stdout
    assert "rejected" in proc.stdout and "rows/s" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert (quickstart.parent / "out" / "quickstart.db").exists()


def test_init_then_run_through_the_console_script(tmp_path: Path) -> None:
    """The wizard on a real stdin pipe, then the job it wrote, run end to end."""
    exe = shutil.which("etlsync")
    cmd = [exe] if exe else [sys.executable, "-m", "etlsync.cli"]
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    answers = "orders\ncsv\ndata/orders.csv\nincremental\nupdated_at\nid\njsonl\nout/o.jsonl\n\n"
    proc = subprocess.run([*cmd, "init", "orders.yaml"], cwd=tmp_path, input=answers,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote orders.yaml" in proc.stdout
    run = subprocess.run([*cmd, "run", "orders.yaml", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["rows_written"] == 300
    assert len((tmp_path / "out" / "o.jsonl").read_text().splitlines()) == 300
