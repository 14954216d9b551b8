"""The examples of docs/concepts/operators/*.md run as written; the operators work from job
files (examples/transforms.yaml), the JSON Schema knows them, and a dry run shows their
output schema and first rows without writing."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from etlsync.jobs import build_job, load_job
from etlsync.jobs.runner import dry_run, run_job
from etlsync.jobs.schema import job_schema

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs/concepts/operators").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_the_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                               ) -> None:
    pytest.importorskip("duckdb")
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert blocks, f"{page.name} has no runnable example"
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page.name}[{i}]", "exec"), {"__name__": "__main__"})


def test_every_family_has_its_page_and_the_index_links_it() -> None:
    index = (ROOT / "docs/concepts/operators.md").read_text()
    for name in ("aggregate", "joins", "dedupe", "cleaning", "quality", "sql"):
        assert (ROOT / f"docs/concepts/operators/{name}.md").exists()
        assert f"operators/{name}.md" in index


def _job(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples/data", tmp_path / "data")
    job = tmp_path / "transforms.yaml"
    shutil.copy(ROOT / "examples/transforms.yaml", job)
    return job


async def test_the_example_job_runs_and_dead_letters_the_rows_failing_rules(
        tmp_path: Path) -> None:
    job = _job(tmp_path)
    result = await run_job(job, env={})
    assert result.summary.status == "completed"
    letters = (tmp_path / "out/transforms_dead_letters.jsonl").read_text().splitlines()
    assert len(letters) == 18 and all("accepted(status)" in json.loads(x)["reason"]
                                      for x in letters)
    assert result.rows_rejected == 18
    rules = result.summary.stages["op:quality"].extra["rules"]
    assert rules["accepted(status)"]["failed"] == 18
    assert result.summary.stages["op:aggregate"].extra["late_rows"] == 0
    conn = sqlite3.connect(tmp_path / "out/transforms.db")
    got = dict(conn.execute("SELECT status, sum(orders) FROM daily_status GROUP BY status"))
    conn.close()
    import csv

    with (ROOT / "examples/data/orders.csv").open() as f:
        statuses = [r["status"] for r in csv.DictReader(f)]
    assert got == {s: statuses.count(s) for s in ("paid", "pending", "shipped")}


async def test_a_dry_run_shows_the_output_schema_and_writes_nothing(tmp_path: Path) -> None:
    job = _job(tmp_path)
    dr = await dry_run(build_job(load_job(job, {})), limit=3)
    schema = next(iter(dr.output_schemas.values()))
    assert schema.names[:3] == ["status", "window_start", "window_end"]
    assert schema.primary_key == ("status", "window_start")
    assert len(dr.rows) == 3 and {"orders", "items", "biggest"} <= set(dr.rows[0])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_schema_knows_the_operators() -> None:
    schema = job_schema()
    for name in ("aggregate", "join", "dedupe", "clean", "split_columns", "merge_columns",
                 "quality", "sql"):
        assert f"operator_{name}" in schema["$defs"], name


@pytest.mark.parametrize("entry", [
    "- aggregate: {group_by: [k], aggregates: {n: count()}, window: {session: 30s}, "
    "time_column: t, late: side_output}",
    "- join: {on: {cid: id}, lookup: {type: memory, rows: [{id: 1, n: a}], key: [id]}}",
    "- join: {kind: interval, left: a, right: b, on: k, time_column: t, within: 5m}",
    "- join: {kind: cdc, left: a, right: b, on: {cid: id}, how: left}",
    "- dedupe: [id]",
    "- clean: {nulls: ['', n/a], case: {k: upper}}",
    "- split_columns: {column: k, into: [a, b], delimiter: '-'}",
    "- merge_columns: {into: m, template: '{k}/{k}'}",
    "- quality: [{not_null: k}, {expression: 'k != 3', action: warn}]",
    "- sql: SELECT k, k * 2 AS k2 FROM batch",
])
def test_each_operator_builds_from_a_job_file(entry: str, tmp_path: Path) -> None:
    if "sql" in entry:
        pytest.importorskip("duckdb")
    job = tmp_path / "job.yaml"
    job.write_text("source: {type: memory, rows: [{k: 1}]}\n"
                   f"operators:\n  {entry}\n"
                   "sink: {type: collect}\ncheckpoint: {type: memory}\n")
    built = build_job(load_job(job, {}))
    assert len(built.operators) == 1


def test_a_bad_option_names_the_operator_entry(tmp_path: Path) -> None:
    from etlsync.core.errors import ConfigError

    job = tmp_path / "job.yaml"
    job.write_text("source: {type: memory, rows: [{k: 1}]}\n"
                   "operators:\n  - aggregate: {group_by: [k], aggregates: {n: median(k)}}\n"
                   "sink: {type: collect}\n")
    with pytest.raises(ConfigError, match=r"operators\[0\].*median"):
        build_job(load_job(job, {}))
    assert os.path.exists(job)
