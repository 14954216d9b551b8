"""Dead-letter sinks (JSON Lines, SQLite, PostgreSQL) and replay."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from etlsync import Pipeline
from etlsync.resilience import (
    DeadLetter,
    DeadLetterSink,
    JsonlDeadLetterSink,
    PostgresDeadLetterSink,
    Resilient,
    SqliteDeadLetterSink,
)
from etlsync.resilience.replay import replay
from etlsync.testing import MemorySource
from tests.resilience.helpers import ValidatingSink, row_problem


def letters() -> list[DeadLetter]:
    return [
        DeadLetter(row={"id": 1, "amount": Decimal("1.10"), "at": dt.date(2024, 1, 2),
                        "raw": b"\x00\xff"}, stage="sink:pg", error_type="DataError",
                   error="numeric field overflow", pipeline="p1", stream="orders",
                   position=("0/16B3748", 7), op="update", before={"id": 1}),
        DeadLetter(row={"id": 2, "name": "zoë"}, stage="sink:pg", error_type="ValueError",
                   error="bad", pipeline="p2", stream="orders", position=3),
    ]


async def roundtrip(store: DeadLetterSink) -> None:
    await store.open()
    try:
        await store.write(letters())
        got = [x async for x in store.read()]
        assert [x.row for x in got] == [x.row for x in letters()]  # lossless values
        first = got[0]
        assert (first.stage, first.error_type, first.error, first.pipeline, first.stream,
                first.position, first.op, first.before) == (
            "sink:pg", "DataError", "numeric field overflow", "p1", "orders",
            ("0/16B3748", 7), "update", {"id": 1})
        assert first.at.tzinfo is not None
        assert [x.row["id"] async for x in store.read(pipeline="p2")] == [2]
        assert first.id is not None
        await store.mark_replayed([first.id])
        assert [x.row["id"] async for x in store.read()] == [2]
        assert await store.count(include_replayed=True) == 2
    finally:
        await store.close()


async def test_jsonl_roundtrip(tmp_path: Path) -> None:
    await roundtrip(JsonlDeadLetterSink(tmp_path / "dead.jsonl"))
    line = (tmp_path / "dead.jsonl").read_text().splitlines()[1]
    assert json.loads(line)["error"] == "bad"  # plain JSON, one object per line


async def test_sqlite_roundtrip(tmp_path: Path, unique_name: str) -> None:
    await roundtrip(SqliteDeadLetterSink(tmp_path / "dead.db", table=unique_name))


@pytest.mark.integration
async def test_postgres_roundtrip(pg_dsn: str, unique_name: str) -> None:
    import asyncpg

    table = f'{unique_name}"quoted'
    store = PostgresDeadLetterSink(pg_dsn, table)
    assert pg_dsn not in repr(store)
    try:
        await roundtrip(store)
    finally:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'drop table if exists "{unique_name}""quoted"')
        await conn.close()


async def test_replay_sends_fixed_rows_and_marks_letters(tmp_path: Path) -> None:
    rows = [{"id": i, "amount": -1 if i % 5 == 0 else i, "name": f"n{i}"} for i in range(40)]
    store = SqliteDeadLetterSink(tmp_path / "dead.db")
    target = ValidatingSink()
    sink = Resilient(target, on_bad_data="dead_letter", dead_letter=store)
    await Pipeline(MemorySource(rows, 8), sinks=[sink], name="orders").run()
    assert await store.count() == 8

    def fix(row: dict[str, Any]) -> dict[str, Any] | None:
        if row["id"] == 35:
            return None  # not fixable yet: held back
        return {**row, "amount": 0}

    fixed_target = ValidatingSink()
    summary = await replay(store, [fixed_target], pipeline="orders", fix=fix)
    assert summary.status == "completed"
    assert [r["id"] for r in fixed_target.rows] == [0, 5, 10, 15, 20, 25, 30]
    assert [x.row["id"] async for x in store.read()] == [35]
    # replay again without a fix: the row fails again and comes back as a new letter
    again = Resilient(ValidatingSink(), on_bad_data="dead_letter", dead_letter=store)
    await replay(store, [again], pipeline="orders")
    remaining = [x async for x in store.read()]
    assert [x.row["id"] for x in remaining] == [35]
    assert remaining[0].id is not None and remaining[0].id > 8
    assert remaining[0].error == row_problem(remaining[0].row)


def test_replay_command_line(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_text("")
    out = subprocess.run([sys.executable, "-m", "etlsync.resilience.replay", "--from", str(path),
                          "--dry-run"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"pending": 0}


async def test_replay_command_sends_letters_to_a_sink_factory(tmp_path: Path) -> None:
    import sqlite3

    store = SqliteDeadLetterSink(tmp_path / "dead.db")
    await store.write([DeadLetter(row={"id": i, "amount": i}, stage="sink:x", error_type="E",
                                  error="e", pipeline="p", stream="s") for i in range(5)])
    await store.close()
    (tmp_path / "replay_target.py").write_text(
        "from etlsync.connectors.sqlite import SqliteSink\n"
        "def make(path):\n    return SqliteSink(path, table='fixed')\n")
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "etlsync.resilience.replay", "--from", "sqlite:dead.db",
         "--sink", "replay_target:make", "--sink-args", json.dumps({"path": "target.db"}),
         "--pipeline", "p"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == 5
    with sqlite3.connect(tmp_path / "target.db") as conn:
        assert conn.execute("select count(*) from fixed").fetchone()[0] == 5
    assert await SqliteDeadLetterSink(tmp_path / "dead.db").count() == 0
