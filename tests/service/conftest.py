"""Fixtures for the service tests: project folders written from dicts, a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from etlsync.service import ManualClock

START = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


MakeProject = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """``make_project(project_dict, {job_name: job_dict})`` writes a project folder."""
    def make(project: dict[str, Any], jobs: dict[str, dict[str, Any]],
             folder: str = "proj") -> Path:
        root = tmp_path / folder
        (root / "jobs").mkdir(parents=True, exist_ok=True)
        (root / "etlsync-project.yaml").write_text(yaml.safe_dump(project))
        for name, job in jobs.items():
            (root / "jobs" / f"{name}.yaml").write_text(yaml.safe_dump(job))
        return root
    return make


def memory_job(rows: int = 3, **extra: Any) -> dict[str, Any]:
    """A small job: ``rows`` rows from memory into a collecting sink."""
    job: dict[str, Any] = {"source": {"type": "memory",
                                      "rows": [{"id": i} for i in range(rows)]},
                           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    job.update(extra)
    return job


@pytest.fixture
async def schema(pg_dsn: str, unique_name: str) -> AsyncIterator[str]:
    """A PostgreSQL schema name for one test (state tables, targets); dropped after it."""
    import asyncpg

    yield unique_name
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')
    finally:
        await conn.close()
