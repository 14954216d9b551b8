"""JsonlSource/JsonlSink and ParquetSource/ParquetSink: round trips, resume, atomic replace."""

from __future__ import annotations

import builtins
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from etlsync import ConfigError, DataError, Pipeline
from etlsync.connectors.files import JsonlSink, JsonlSource, ParquetSink, ParquetSource, csvfile
from etlsync.testing import CollectingSink, MemorySource


async def read_rows(source: Any, position: Any = None) -> list[dict[str, Any]]:
    return [r async for b in source.read(position) for r in b.rows]


async def test_jsonl_source_keeps_json_types_and_skips_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    p.write_text('{"id": 1, "tags": ["a"], "ok": true, "x": null}\n\n{"id": 2, "n": 1.5}\n')
    assert await read_rows(JsonlSource(p)) == [
        {"id": 1, "tags": ["a"], "ok": True, "x": None}, {"id": 2, "n": 1.5}]
    schema = (await JsonlSource(p).discover())["events"]
    assert [(c.name, c.type.value) for c in schema.columns] == [
        ("id", "integer"), ("tags", "json"), ("ok", "boolean"), ("x", "unknown"), ("n", "float")]


async def test_jsonl_source_names_the_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"bad.jsonl: byte 10: expected a JSON object"):
        await read_rows(JsonlSource(p))


async def test_jsonl_resume_in_small_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text("".join(json.dumps({"id": i, "s": "é" * (i % 5)}) + "\n" for i in range(50)))
    monkeypatch.setattr(csvfile, "CHUNK_BYTES", 37)
    src = JsonlSource(p, batch_size=7)
    batches = [b async for b in src.read(None)]
    assert [r["id"] for b in batches for r in b.rows] == list(range(50))
    for k, b in enumerate(batches[:-1]):
        rest = await read_rows(src, b.position)
        assert [r["id"] for r in rest] == list(range(7 * (k + 1), 50))


async def test_jsonl_sink_encodes_rich_values(tmp_path: Path) -> None:
    p = tmp_path / "out.jsonl"
    rows = [{"id": 1, "d": Decimal("1.10"), "t": dt.datetime(2024, 5, 1, 10, 0), "b": b"\x00",
             "day": dt.date(2024, 5, 1)}]
    await Pipeline(MemorySource(rows), [], [JsonlSink(p)]).run()
    assert json.loads(p.read_text()) == {"id": 1, "d": "1.10", "t": "2024-05-01T10:00:00",
                                         "b": "AA==", "day": "2024-05-01"}


ROWS = [{"id": i, "price": Decimal(f"{i}.25"), "at": dt.datetime(2024, 1, 1) + dt.timedelta(hours=i),
         "name": f"n{i}" if i % 3 else None} for i in range(25)]


async def test_parquet_round_trip_and_row_resume(tmp_path: Path) -> None:
    p = tmp_path / "t.parquet"
    await Pipeline(MemorySource(ROWS, batch_size=4), [], [ParquetSink(p, row_group_size=10)]).run()
    src = ParquetSource(p, batch_size=6)
    batches = [b async for b in src.read(None)]
    assert [r for b in batches for r in b.rows] == ROWS
    rest = await read_rows(src, batches[1].position)
    assert rest == ROWS[12:]
    schema = (await src.discover())["t"]
    assert [c.type.value for c in schema.columns] == ["integer", "decimal", "datetime", "string"]
    assert await read_rows(ParquetSource(p, columns=["id"]), None) == [{"id": r["id"]} for r in ROWS]


async def test_parquet_append_copies_the_old_row_groups(tmp_path: Path) -> None:
    p = tmp_path / "t.parquet"
    await Pipeline(MemorySource(ROWS[:10]), [], [ParquetSink(p)]).run()
    await Pipeline(MemorySource(ROWS[10:]), [], [ParquetSink(p)]).run()
    assert await read_rows(ParquetSource(p)) == ROWS


def test_missing_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = builtins.__import__

    def fake(name: str, *a: Any, **k: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError("No module named 'pyarrow'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ConfigError, match=r"etlsync\[parquet\]"):
        ParquetSink(tmp_path / "x.parquet")
    with pytest.raises(ConfigError, match=r"etlsync\[parquet\]"):
        ParquetSource(tmp_path / "x.parquet")


async def test_parquet_incremental_reads_only_newer_rows(tmp_path: Path) -> None:
    from etlsync import MemoryCheckpointStore as Store

    folder = tmp_path / "parts"
    folder.mkdir()
    store = Store()

    async def run() -> list[int]:
        sink = CollectingSink()
        src = ParquetSource(str(folder / "*.parquet"), batch_size=4, sync_mode="incremental",
                            cursor_field="at", primary_key=["id"])
        await Pipeline(src, [], [sink], name="pq", checkpoint_store=store).run()
        return [r["id"] for r in sink.rows]

    await Pipeline(MemorySource(ROWS[:10]), [], [ParquetSink(folder / "a.parquet")]).run()
    assert await run() == list(range(10))
    tie = {**ROWS[9], "id": 100}  # same cursor value as the last row read: a tie
    await Pipeline(MemorySource([tie, *ROWS[10:15]]), [], [ParquetSink(folder / "b.parquet")]).run()
    assert await run() == [100, *range(10, 15)]
    assert await run() == []
