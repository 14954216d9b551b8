"""SQL over batches (DuckDB): per batch and per pass; errors name the statement and where in
it; the output schema for dry runs."""

from __future__ import annotations

import pytest

from etlsync import Pipeline
from etlsync.core.errors import ConfigError, StageError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.testing import CollectingSink, MemorySource

pytest.importorskip("duckdb")
from etlsync.operators import Sql
from etlsync.operators.sql import position_in

ROWS = [{"id": i, "region": ("eu", "us", "apac")[i % 3], "amount": i * 1.5} for i in range(100)]


async def test_a_statement_runs_on_every_batch() -> None:
    sink = CollectingSink()
    op = Sql("SELECT id, upper(region) AS region, amount * 2 AS doubled FROM batch "
             "WHERE amount > 30")
    await Pipeline(MemorySource(ROWS, 16), [op], sink).run()
    assert [r["id"] for r in sink.rows] == [i for i in range(100) if i * 1.5 > 30]
    assert sink.rows[0] == {"id": 21, "region": "EU", "doubled": 63.0}
    assert all(b.form == "arrow" for b in sink.batches)


async def test_over_a_pass_the_statement_sees_the_whole_input() -> None:
    sink = CollectingSink()
    op = Sql("SELECT region, count(*) AS n, sum(amount) AS total FROM batch GROUP BY region "
             "ORDER BY region", over="pass")
    await Pipeline(MemorySource(ROWS, 16), [op], sink).run()
    assert sink.rows == [
        {"region": r, "n": sum(1 for x in ROWS if x["region"] == r),
         "total": sum(x["amount"] for x in ROWS if x["region"] == r)}
        for r in ("apac", "eu", "us")]


async def test_over_row_windows() -> None:
    sink = CollectingSink()
    op = Sql("SELECT min(id) AS lo, max(id) AS hi, count(*) AS n FROM batch", over="rows",
             window_rows=40)
    await Pipeline(MemorySource(ROWS, 16), [op], sink).run()
    assert sink.rows == [{"lo": 0, "hi": 47, "n": 48}, {"lo": 48, "hi": 95, "n": 48},
                         {"lo": 96, "hi": 99, "n": 4}]
    with pytest.raises(ConfigError):
        Sql("SELECT 1 FROM batch", over="rows")


def test_syntax_errors_name_the_statement_and_position() -> None:
    with pytest.raises(ConfigError) as info:
        Sql("SELECT id\nFORM batch")
    assert "line 2" in str(info.value) and "FORM batch" in str(info.value)
    with pytest.raises(ConfigError, match="exactly one"):
        Sql("SELECT 1; SELECT 2")


async def test_runtime_errors_name_the_statement_and_position() -> None:
    with pytest.raises(StageError) as info:
        await Pipeline(MemorySource(ROWS), [Sql("SELECT id, nope FROM batch")],
                       CollectingSink()).run()
    text = str(info.value)
    assert "nope" in text and "line 1, column 12" in text and "SELECT id, nope" in text
    with pytest.raises(StageError) as info:
        await Pipeline(MemorySource(ROWS), [Sql("SELECT id,\n  CAST(region AS INT) AS r "
                                                "FROM batch")], CollectingSink()).run()
    assert "line 2, column 3" in str(info.value)  # where CAST starts
    assert position_in("SELECT x FROM t", "no position here") is None


def test_the_output_schema_is_known_before_running() -> None:
    op = Sql("SELECT region, count(*) AS n, avg(amount) AS a FROM batch GROUP BY region")
    schema = Schema((Column("id", ColumnType.INTEGER), Column("region"),
                     Column("amount", ColumnType.FLOAT)))
    out = op.transform_schema(schema)
    assert out is not None
    assert [(c.name, c.type) for c in out.columns] == [
        ("region", ColumnType.STRING), ("n", ColumnType.INTEGER), ("a", ColumnType.FLOAT)]
