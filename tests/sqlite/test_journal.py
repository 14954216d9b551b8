"""The SQLite journal: every kind of change a run makes is reverted exactly, checkpoint
included; later runs and tables without rowids are refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from etlsync.connectors.sqlite import SqliteSink
from etlsync.core.batch import Batch
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import StageError
from etlsync.core.revert import RevertError, Rewind
from tests.service.journal_cases import CASES, SEED, run


def snapshot(path: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(path)
    try:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(t)")]
        rows = sorted(conn.execute("SELECT rowid, * FROM t").fetchall())
        state = conn.execute("SELECT position FROM _etlsync_state").fetchall()
        return cols, rows, state
    finally:
        conn.close()


def sink(path: Path, **kw: Any) -> SqliteSink:
    return SqliteSink(path, table="t", write_mode="upsert", primary_key=["id"], **kw)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_reverted_run_leaves_the_table_and_checkpoint_as_before(tmp_path: Path,
                                                                       case: str) -> None:
    path = tmp_path / "t.db"
    await run(sink(path), [Batch([*SEED, {"id": 6, "v": b"\x00\xff", "n": 2}])], "p", None)
    before = snapshot(path)
    target = sink(path)
    await run(target, CASES[case], "p", "r1")
    assert snapshot(path) != before
    report = await target.revert("r1", Rewind("p", Checkpoint.decode(before[2][0][0])))
    assert snapshot(path) == before
    assert report.checkpoint_rewound
    with pytest.raises(RevertError, match="nothing was recorded for run r1"):
        await target.revert("r1")


async def test_a_later_run_on_the_same_table_blocks_the_revert_unless_forced(
        tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    await run(sink(path), [Batch(SEED)], "p", None)
    before = snapshot(path)
    await run(sink(path), [Batch([{"id": 1, "v": "first", "n": 0}])], "p", "r1")
    await run(sink(path), [Batch([{"id": 2, "v": "second", "n": 0}])], "q", "r2")
    with pytest.raises(RevertError, match="run r2 changed table 't' after run r1"):
        await sink(path).revert("r1")
    await sink(path).revert("r2")
    await sink(path).revert("r1")
    assert snapshot(path)[1] == before[1]


async def test_a_table_without_rowid_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID")
    conn.close()
    with pytest.raises(StageError, match="WITHOUT ROWID"):
        await run(sink(path), [Batch([{"id": 1, "v": "a"}])], "p", "r1")


async def test_unjournaled_runs_record_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    await run(sink(path), [Batch(SEED)], "p", None)
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert not any(t.startswith("_etlsync_undo") for t in tables)
