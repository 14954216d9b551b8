"""SqliteSource: full refresh by rowid or query, resume, incremental with ties."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import ConfigError, MemoryCheckpointStore, Pipeline
from etlsync.connectors.sqlite import SqliteSource
from etlsync.testing import CollectingSink


def make_table(db: Path, table: str, rows: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (id INTEGER PRIMARY KEY, '
                 "updated_at TEXT, v TEXT)")
    conn.executemany(f'INSERT INTO "{table}" VALUES (?, ?, ?)', rows)
    conn.commit()
    conn.close()


async def read(source: SqliteSource, position: Any = None) -> list[Any]:
    return [b async for b in source.read(position)]


async def test_full_refresh_reads_in_rowid_order_and_resumes(tmp_path: Path,
                                                             unique_name: str) -> None:
    db = tmp_path / "s.db"
    make_table(db, unique_name, [(i, f"2024-01-{i:02d}", f"v{i}") for i in range(1, 11)])
    src = SqliteSource(db, table=unique_name, batch_size=4)
    batches = await read(src)
    assert [len(b) for b in batches] == [4, 4, 2, 0] and batches[-1].end_of_pass
    assert batches[0].rows[0] == {"id": 1, "updated_at": "2024-01-01", "v": "v1"}
    rest = await read(src, batches[0].position)
    assert [r["id"] for b in rest for r in b.rows] == list(range(5, 11))
    again = await read(src, src.next_pass(batches[-1].position))  # the next pass starts over
    assert sum(len(b) for b in again) == 10


async def test_query_resumes_by_row_count(tmp_path: Path, unique_name: str) -> None:
    db = tmp_path / "s.db"
    make_table(db, unique_name, [(i, "x", "a" if i % 2 else "b") for i in range(1, 11)])
    src = SqliteSource(db, query=f"SELECT id, v FROM \"{unique_name}\" WHERE v = 'a' ORDER BY id",
                       batch_size=2)
    batches = await read(src)
    assert [r["id"] for b in batches for r in b.rows] == [1, 3, 5, 7, 9]
    rest = await read(src, batches[1].position)
    assert [r["id"] for b in rest for r in b.rows] == [9]
    assert (await src.discover())["query"].names == ["id", "v"]


def test_exactly_one_of_table_or_query(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        SqliteSource(tmp_path / "x.db")
    with pytest.raises(ConfigError, match="cursor_field"):
        SqliteSource(tmp_path / "x.db", table="t", sync_mode="incremental")


async def test_incremental_tie_committed_after_a_run_is_delivered(tmp_path: Path,
                                                                  unique_name: str) -> None:
    db = tmp_path / "s.db"
    make_table(db, unique_name, [(1, "2024-01-01", "a"), (2, "2024-01-02", "b")])
    store = MemoryCheckpointStore()
    src = SqliteSource(db, table=unique_name, sync_mode="incremental", cursor_field="updated_at")

    async def run() -> list[int]:
        sink = CollectingSink()
        await Pipeline(src, [], [sink], name="inc", checkpoint_store=store).run()
        return [r["id"] for r in sink.rows]

    assert await run() == [1, 2]
    assert await run() == []
    make_table(db, unique_name, [(3, "2024-01-02", "tie"), (4, "2024-01-03", "new")])
    assert await run() == [3, 4]
    assert await run() == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(st.lists(st.integers(0, 2), max_size=10), min_size=1, max_size=5),
       batch=st.integers(1, 4), crash_after=st.integers(0, 3))
async def test_incremental_rounds_with_ties_and_crashes_deliver_each_row_once(
        tmp_path_factory: pytest.TempPathFactory, rounds: list[list[int]], batch: int,
        crash_after: int) -> None:
    """Rows arrive in rounds with cursor values at or above the maximum (ties included); each
    round's first read stops after ``crash_after`` batches without a final commit, as a
    crashed run would, and a second read resumes from the last committed position."""
    db = tmp_path_factory.mktemp("inc") / "s.db"
    make_table(db, "t", [])
    src = SqliteSource(db, table="t", batch_size=batch, sync_mode="incremental",
                       cursor_field="updated_at")
    position: Any = None
    delivered: list[int] = []
    top, next_id = 0, 0
    for steps in rounds:
        new = []
        for step in steps:
            top += step
            new.append((next_id, f"{top:04d}", ""))
            next_id += 1
        make_table(db, "t", new)
        agen = src.read(position)
        n = 0
        async for b in agen:  # the crashed run: its batches were written, then it died
            delivered += [r["id"] for r in b.rows]
            position = b.position
            n += 1
            if n >= crash_after:
                break
        await agen.aclose()
        async for b in src.read(position):
            delivered += [r["id"] for r in b.rows]
            position = b.position
    assert sorted(delivered) == list(range(next_id))
    assert len(delivered) == next_id
