"""SqliteCheckpointStore: durable, lossless, atomic positions in a SQLite file."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import CheckpointStore, Pipeline
from etlsync.connectors.sqlite.checkpoint import SqliteCheckpointStore
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import StageError
from etlsync.testing import CollectingSink, MemorySource

positions = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=5)
    | st.decimals(allow_nan=False, allow_infinity=False) | st.datetimes() | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3).filter(lambda k: k != "$t"), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=positions)
async def test_positions_round_trip_exactly(tmp_path: Path, position: Any) -> None:
    store = SqliteCheckpointStore(tmp_path / "state.db")
    await store.commit("p", Checkpoint(position, pass_open=False))
    assert await store.load("p") == Checkpoint(position, pass_open=False)
    await store.close()


async def test_store_creates_the_file_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    store = SqliteCheckpointStore(path)
    assert isinstance(store, CheckpointStore)
    assert await store.load("p") is None
    await store.commit("p", Checkpoint({"at": dt.datetime(2024, 1, 1), "n": Decimal("1.5")}))
    await store.commit("q", Checkpoint(1))
    await store.close()
    again = SqliteCheckpointStore(path)
    assert await again.load("p") == Checkpoint({"at": dt.datetime(2024, 1, 1), "n": Decimal("1.5")})
    await again.reset("q")
    assert await again.load("q") is None
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    await again.close()


async def test_pipeline_resumes_from_the_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    rows = [{"id": i} for i in range(10)]

    def stop_at_8(batch: Any) -> None:
        if batch.rows and batch.rows[0]["id"] == 8:
            raise RuntimeError("crash")

    first = CollectingSink(fail_on=stop_at_8)
    with pytest.raises(StageError):
        await Pipeline(MemorySource(rows, batch_size=4), [], [first], name="r",
                       checkpoint_store=SqliteCheckpointStore(path)).run()
    second = CollectingSink()
    await Pipeline(MemorySource(rows, batch_size=4), [], [second], name="r",
                   checkpoint_store=SqliteCheckpointStore(path)).run()
    assert [r["id"] for r in first.rows + second.rows] == list(range(10))
    third = CollectingSink()  # that pass was complete: the next run starts a new one
    await Pipeline(MemorySource(rows, batch_size=4), [], [third], name="r",
                   checkpoint_store=SqliteCheckpointStore(path)).run()
    assert [r["id"] for r in third.rows] == list(range(10))
