"""COPY of arrow-form batches: every column the arrow path renders must reach the server as
exactly the value the record path (asyncpg's binary COPY of the same values) stores; every
other column must be left to the record path."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from etlsync import Pipeline
from etlsync.connectors.postgres import PostgresSink, payload
from etlsync.connectors.postgres.arrowcopy import copy_arrow, render_csv
from etlsync.core.batch import Batch
from etlsync.core.stages import Source

pa = pytest.importorskip("pyarrow")

# target type -> an arrow column the arrow path renders (nulls included)
RENDERED: dict[str, Any] = {
    "bigint": pa.array([0, -1, 2**63 - 1, -(2**63), None, 42], pa.int64()),
    "integer": pa.array([0, 2**31 - 1, -(2**31), None], pa.int32()),
    "smallint": pa.array([0, 32767, -32768, None], pa.int64()),
    "numeric": pa.array([0, 12, -(2**62), None], pa.int64()),
    "numeric(12,2)": pa.array([Decimal("1.50"), Decimal("-0.01"), Decimal("9999999999.99"),
                               None], pa.decimal128(12, 2)),
    "numeric ": pa.array([Decimal("123456789012345678901234567890.12345678"),
                          Decimal("0E-8"), None], pa.decimal128(38, 8)),
    "double precision": pa.array([0.0, -0.0, float("nan"), float("inf"), float("-inf"),
                                  5e-324, 1.7976931348623157e308, 0.1, 1e-7, -123.456e200,
                                  None], pa.float64()),
    "text": pa.array(["", None, "a\\b", "tab\there", "nl\nx", "cr\rx", "\\N", "N", "\\.",
                      "ünïcödé ✓ 𝄞", "'quote\"", " spaces ", '""', ",", "end\\"], pa.string()),
    "character varying(20)": pa.array(["short", "", None, "x\ty"], pa.large_string()),
    "jsonb": pa.array(['{"a": [1, "x\\ty"]}', "null", '"s"', None], pa.string()),
    "boolean": pa.array([True, False, None], pa.bool_()),
    "date": pa.array([dt.date(2024, 2, 29), dt.date(1000, 1, 1), dt.date(1970, 1, 1),
                      dt.date(9998, 12, 31), None], pa.date32()),
    "timestamp without time zone": pa.array(
        [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 0, 1),
         dt.datetime(1900, 12, 31, 23, 59, 59, 999999), dt.datetime(2, 1, 1), None],
        pa.timestamp("us")),
    "timestamp(0) without time zone": pa.array(
        [dt.datetime(2024, 1, 1, 0, 0, 1), None], pa.timestamp("s")),
    "timestamp with time zone": pa.array(
        [dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(1950, 6, 1, 12, 30, 5, 123,
                                                             tzinfo=dt.UTC), None],
        pa.timestamp("us", tz="UTC")),
    "timestamp(3) with time zone": pa.array(  # Cast's output type for ``timestamp``
        [dt.datetime(2024, 1, 1, 0, 0, 0, 1500, tzinfo=dt.UTC), None],
        pa.timestamp("us", tz="+00:00")),
    "time without time zone": pa.array([dt.time(0, 0), dt.time(23, 59, 59, 999999), None],
                                       pa.time64("us")),
}

# (target type, arrow column) the arrow path must leave to the record path
NOT_RENDERED: list[tuple[str, Any]] = [
    ("bigint", pa.array(["1"], pa.string())),  # a string into a number: binary refuses it
    ("bigint", pa.array([True], pa.bool_())),
    ("text", pa.array([1], pa.int64())),
    ("real", pa.array([0.1], pa.float64())),  # float4 from text rounds differently
    ("numeric", pa.array([0.5], pa.float64())),
    ("timestamp with time zone", pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us"))),
    ("timestamp without time zone",
     pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC"))),
    ("timestamp without time zone", pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("ns"))),
    ("timestamp without time zone", pa.array([dt.datetime.max], pa.timestamp("us"))),
    ("date", pa.array([dt.date.min], pa.date32())),
    ("bigint", pa.array([2**64 - 1], pa.uint64())),
    ("bytea", pa.array([b"x"], pa.binary())),
]


async def _load(conn: asyncpg.Connection, table: str, native: str, column: Any,
                arrow: bool) -> list[Any]:
    await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    await conn.execute(f'CREATE TABLE "{table}" (n int, v {native})')
    t = pa.table({"n": pa.array(range(len(column)), pa.int32()), "v": column})
    pairs, natives = [("n", "n"), ("v", "v")], ["integer", native]
    if arrow:
        assert await copy_arrow(conn, table, None, pairs, t, natives)
    else:
        await conn.copy_records_to_table(table, columns=["n", "v"],
                                         records=Batch.from_arrow(t).records)
    return [tuple(r) for r in await conn.fetch(f'SELECT n, v, v::text FROM "{table}" ORDER BY n')]


@pytest.mark.integration
@pytest.mark.parametrize("native", list(RENDERED))
async def test_arrow_csv_stores_what_the_record_path_stores(
        conn: asyncpg.Connection, table: str, native: str) -> None:
    column = RENDERED[native]
    by_arrow = await _load(conn, table, native.strip(), column, arrow=True)
    by_records = await _load(conn, table, native.strip(), column, arrow=False)
    assert len(by_arrow) == len(column)
    assert [r[2] for r in by_arrow] == [r[2] for r in by_records]  # the server's own text
    assert [r[1] for r in by_arrow] == [r[1] for r in by_records] or native == "double precision"


@pytest.mark.parametrize(("native", "column"), NOT_RENDERED,
                         ids=[f"{n}-{c.type}" for n, c in NOT_RENDERED])
def test_other_pairs_are_left_to_the_record_path(native: str, column: Any) -> None:
    t = pa.table({"v": column})
    assert render_csv(t, [("v", "v")], [native]) is None


class _Batches(Source):
    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        for b in self.batches:
            yield b


def _no_records(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the sink took the record path")


@pytest.mark.integration
async def test_sink_takes_the_arrow_path_and_creates_typed_columns(
        conn: asyncpg.Connection, pg_dsn: str, table: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An arrow-form batch into a new table: the target's columns follow the arrow types,
    the rows arrive, and the sink never took its record path (the arrow path really ran)."""
    monkeypatch.setattr(payload.Rows, "columns", _no_records)
    t = pa.table({"id": pa.array([1, 2], pa.int64()), "name": pa.array(["a", ""]),
                  "price": pa.array([Decimal("1.50"), None], pa.decimal128(10, 2)),
                  "at": pa.array([dt.datetime(2024, 1, 1, 12), None], pa.timestamp("us"))})
    batch = Batch.from_arrow(t, stream="s")
    await Pipeline(_Batches([batch]), [], [PostgresSink(pg_dsn, table=table)],
                   name=table).run()
    rows = await conn.fetch(f'SELECT id, name, price, at FROM "{table}" ORDER BY id')
    assert [tuple(r) for r in rows] == [(1, "a", Decimal("1.50"), dt.datetime(2024, 1, 1, 12)),
                                        (2, "", None, None)]
    types = dict(await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1",
        table))
    assert types["id"] == "bigint" and types["price"] == "numeric"
    assert types["at"] == "timestamp without time zone"


@pytest.mark.integration
@pytest.mark.parametrize("conflict", ["overwrite", "skip", "merge"])
async def test_upsert_of_arrow_batches(conn: asyncpg.Connection, pg_dsn: str, table: str,
                                       conflict: str) -> None:
    """New keys go straight in (the insert-only path, from the table), stored keys through
    the staged ``INSERT ... ON CONFLICT``: the table ends as the strategy says."""
    first = pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                      "v": pa.array(["a", "b", None], pa.string())})
    second = pa.table({"id": pa.array([3, 4], pa.int64()), "v": pa.array(["C", "d"])})
    sink = PostgresSink(pg_dsn, table=table, write_mode="upsert", primary_key=["id"],
                        conflict=conflict)
    await Pipeline(_Batches([Batch.from_arrow(first, stream="s"),
                             Batch.from_arrow(second, stream="s")]), [], [sink],
                   name=table).run()
    got = [tuple(r) for r in await conn.fetch(f'SELECT id, v FROM "{table}" ORDER BY id')]
    three = "C" if conflict in ("overwrite", "merge") else None
    assert got == [(1, "a"), (2, "b"), (3, three), (4, "d")]
