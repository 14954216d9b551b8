"""The job file's ``errors:`` section: bad rows go to a dead-letter sink, good rows load."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from etlsync.core.errors import ConfigError
from etlsync.jobs.runner import run_job

JOB = """
name: dirty
source: {type: csv, path: data.csv}
operators:
  - cast: {id: integer, price: decimal}
sink: {type: sqlite, path: out.db, table: orders}
write: {write_mode: upsert}
sync: {primary_key: [id]}
batch_size: 4
errors:
  on_bad_data: dead_letter
  dead_letter: {type: jsonl, path: dead.jsonl}
"""


def write_job(tmp_path: Path, job: str, rows: list[str]) -> Path:
    (tmp_path / "data.csv").write_text("id,price\n" + "\n".join(rows) + "\n")
    path = tmp_path / "job.yaml"
    path.write_text(job)
    return path


async def test_bad_rows_are_dead_lettered_with_reason_and_good_rows_load(tmp_path: Path) -> None:
    rows = [f"{i},{i}.50" for i in range(1, 11)]
    rows[2] = "3,three"        # a bad decimal
    rows[7] = "eight,8.00"     # a bad integer
    result = await run_job(write_job(tmp_path, JOB, rows))
    assert result.summary.status == "completed"
    assert result.rows_rejected == 2
    stored = sqlite3.connect(tmp_path / "out.db").execute(
        "SELECT id FROM orders ORDER BY id").fetchall()
    assert [r[0] for r in stored] == [1, 2, 4, 5, 6, 7, 9, 10]
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert sorted(d["row"]["price"] for d in dead) == ["8.00", "three"]
    assert {d["stage"] for d in dead} == {"op:cast"}
    assert {d["error_type"] for d in dead} == {"DataError"}
    assert any("column 'price'" in d["error"] and "three" in d["error"] for d in dead)
    assert any("column 'id'" in d["error"] and "eight" in d["error"] for d in dead)


async def test_dead_letter_policy_needs_a_dead_letter_sink(tmp_path: Path) -> None:
    job = JOB.replace("  dead_letter: {type: jsonl, path: dead.jsonl}\n", "")
    with pytest.raises(ConfigError, match=r"errors\.dead_letter"):
        await run_job(write_job(tmp_path, job, ["1,1.00"]))


async def test_unknown_dead_letter_type_is_named(tmp_path: Path) -> None:
    job = JOB.replace("type: jsonl", "type: kafka")
    with pytest.raises(ConfigError, match=r"errors\.dead_letter\.type.*kafka"):
        await run_job(write_job(tmp_path, job, ["1,1.00"]))
