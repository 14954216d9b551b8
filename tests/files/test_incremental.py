"""Incremental sync of files: only rows above the watermark pass; ties are exact."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import ConfigError, MemoryCheckpointStore, Pipeline
from etlsync.connectors.files import CsvSource, JsonlSource
from etlsync.testing import CollectingSink


def append_csv(path: Path, rows: list[tuple[int, str]]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["id", "updated_at"])
        w.writerows(rows)


async def run_once(source: CsvSource | JsonlSource, store: MemoryCheckpointStore) -> list[str]:
    sink = CollectingSink()
    await Pipeline(source, [], [sink], name="inc", checkpoint_store=store).run()
    return [r["id"] for r in sink.rows]


async def test_ties_at_the_watermark_are_delivered_once(tmp_path: Path) -> None:
    p = tmp_path / "orders.csv"
    append_csv(p, [(2, "2024-01-02"), (1, "2024-01-01")])  # not sorted by the cursor
    store = MemoryCheckpointStore()
    src = CsvSource(p, sync_mode="incremental", cursor_field="updated_at", primary_key=["id"])
    assert await run_once(src, store) == ["2", "1"]
    assert await run_once(src, store) == []  # nothing new
    append_csv(p, [(3, "2024-01-02"), (4, "2024-01-03"), (5, "2024-01-01")])
    # 3 ties with the watermark (new key): delivered; 5 is below it: not read (the rule)
    assert await run_once(src, store) == ["3", "4"]
    append_csv(p, [(6, "2024-01-03")])
    assert await run_once(src, store) == ["6"]
    assert await run_once(src, store) == []


async def test_cursor_type_compares_numbers_not_strings(tmp_path: Path) -> None:
    p = tmp_path / "n.csv"
    append_csv(p, [(1, "9")])
    store = MemoryCheckpointStore()
    src = CsvSource(p, sync_mode="incremental", cursor_field="updated_at", primary_key=["id"],
                    cursor_type="integer")
    assert await run_once(src, store) == ["1"]
    append_csv(p, [(2, "10")])
    assert await run_once(src, store) == ["2"]


async def test_jsonl_incremental_without_primary_key_uses_the_whole_row(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_text('{"id": "a", "ts": 1, "tags": ["x"]}\n')
    store = MemoryCheckpointStore()
    src = JsonlSource(p, sync_mode="incremental", cursor_field="ts")
    assert await run_once(src, store) == ["a"]
    with p.open("a") as f:
        f.write('{"id": "b", "ts": 1}\n{"id": "a", "ts": 1, "tags": ["x"]}\n')
    assert await run_once(src, store) == ["b"]  # the identical row was already delivered


def test_incremental_needs_a_cursor_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cursor_field"):
        CsvSource(tmp_path / "x.csv", sync_mode="incremental")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(st.lists(st.integers(0, 3), max_size=8), min_size=1, max_size=5),
       batch=st.integers(1, 5))
async def test_rounds_of_appends_deliver_every_row_exactly_once(
        tmp_path_factory: pytest.TempPathFactory, rounds: list[list[int]], batch: int) -> None:
    """Each round appends rows whose cursor is the current maximum plus 0..3 (0: a tie)."""
    p = tmp_path_factory.mktemp("inc") / "r.csv"
    append_csv(p, [])
    store = MemoryCheckpointStore()
    src = CsvSource(p, batch_size=batch, sync_mode="incremental", cursor_field="updated_at",
                    primary_key=["id"], cursor_type="integer")
    delivered: list[str] = []
    top, next_id = 0, 0
    for steps in rounds:
        new = []
        for step in steps:
            top += step
            new.append((next_id, str(top)))
            next_id += 1
        append_csv(p, new)
        delivered += await run_once(src, store)
    assert sorted(delivered, key=int) == [str(i) for i in range(next_id)]
