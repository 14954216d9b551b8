"""Aggregate: results equal DuckDB's over the whole input, for the whole input and for
tumbling, hopping and session windows; batching does not change results; late rows, the
changelog and the state cap."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import Batch, Pipeline
from etlsync.connectors.sqlite import SqliteSink
from etlsync.operators import Aggregate, Hopping, Session, StateLimitExceeded, Tumbling
from etlsync.operators._common import RowsRejected
from etlsync.resilience import MemoryDeadLetterSink
from etlsync.testing import CollectingSink, MemorySource

duckdb = pytest.importorskip("duckdb")
pa = pytest.importorskip("pyarrow")

AGGS = {"n": "count()", "nv": "count(v)", "s": "sum(v)", "a": "avg(v)", "lo": "min(v)",
        "hi": "max(v)", "d": "count_distinct(v)"}
SQL_AGGS = ("count(*) AS n, count(v) AS nv, sum(v) AS s, avg(v) AS a, min(v) AS lo, "
            "max(v) AS hi, count(DISTINCT v) AS d")


def _table(rows: list[dict[str, Any]]) -> Any:
    return pa.table({c: [r[c] for r in rows] for c in rows[0]})


def duck(rows: list[dict[str, Any]], sql: str) -> list[dict[str, Any]]:
    con = duckdb.connect()
    con.register("t", _table(rows))
    result = con.sql(sql).to_arrow_table().to_pylist()
    con.close()
    return result


async def run(op: Aggregate, rows: list[dict[str, Any]], batch: int, **kw: Any
              ) -> list[dict[str, Any]]:
    sink = CollectingSink()
    await Pipeline(MemorySource(rows, batch), [op], sink, **kw).run()
    return sink.rows


def _norm(rows: list[dict[str, Any]], keys: list[str]) -> list[tuple[Any, ...]]:
    def v(x: Any) -> Any:
        return round(float(x), 9) if isinstance(x, float | Decimal) else x
    return sorted((tuple(v(r[k]) for k in keys) for r in rows), key=repr)


OUT = ["k", "n", "nv", "s", "a", "lo", "hi", "d"]

rows_strategy = st.lists(
    st.fixed_dictionaries({"k": st.integers(0, 3) | st.none(),
                           "v": st.integers(-50, 50) | st.none(),
                           "ts": st.integers(0, 400)}),
    min_size=1, max_size=250)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, batch=st.integers(1, 40))
async def test_whole_input_equals_duckdb(rows: list[dict[str, Any]], batch: int) -> None:
    got = await run(Aggregate(["k"], AGGS), rows, batch)
    want = duck(rows, f"SELECT k, {SQL_AGGS} FROM t GROUP BY k")
    assert _norm(got, OUT) == _norm(want, OUT)


async def test_the_arrow_path_equals_the_row_path() -> None:
    rng = random.Random(7)
    rows = [{"k": rng.choice(["a", "b", None]), "g": rng.randrange(3),
             "v": rng.choice([None, *range(20)]), "ts": i} for i in range(5000)]
    aggs = {**AGGS, "f": "first(v)", "l": "last(v)"}
    table = _table(rows)

    class ArrowSource(MemorySource):
        async def read(self, position: Any):  # type: ignore[no-untyped-def, override]
            for i in range(0, table.num_rows, 700):
                yield Batch.from_arrow(table.slice(i, 700), position=i + 700)

    sink = CollectingSink()
    await Pipeline(ArrowSource([]), [Aggregate(["k", "g"], aggs)], sink).run()
    by_rows = await run(Aggregate(["k", "g"], aggs), rows, 700)
    keys = ["k", "g", *aggs]
    assert _norm(sink.rows, keys) == _norm(by_rows, keys)
    assert len(by_rows) == 9


WINDOWS = [
    (Tumbling(30), "SELECT k, (ts // 30) * 30 AS window_start, {aggs} FROM t GROUP BY ALL"),
    (Hopping(30, 10), "SELECT k, w AS window_start, {aggs} FROM t, "
                      "range((ts // 10) * 10 - 20, (ts // 10) * 10 + 1, 10) r(w) GROUP BY ALL"),
    (Session(15), "WITH o AS (SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY k ORDER BY ts)"
                  " < 15 THEN 0 ELSE 1 END AS new FROM t), s AS (SELECT *, sum(new) OVER "
                  "(PARTITION BY k ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid FROM o) "
                  "SELECT k, min(ts) AS window_start, {aggs} FROM s GROUP BY k, sid"),
]


@pytest.mark.parametrize("window,sql", WINDOWS, ids=["tumbling", "hopping", "session"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, batch=st.integers(1, 30), disorder=st.integers(0, 20))
async def test_windows_equal_duckdb_when_nothing_is_late(
        window: Any, sql: str, rows: list[dict[str, Any]], batch: int, disorder: int) -> None:
    rows = sorted(rows, key=lambda r: r["ts"])
    rng = random.Random(len(rows) * 31 + disorder)
    shuffled = sorted(rows, key=lambda r: r["ts"] + rng.uniform(0, disorder))
    op = Aggregate(["k"], AGGS, window=window, time_column="ts", allowed_lateness=disorder + 1)
    got = await run(op, shuffled, batch)
    want = duck(rows, sql.format(aggs=SQL_AGGS))
    keys = ["k", "window_start", "n", "nv", "s", "a", "lo", "hi", "d"]
    assert _norm(got, keys) == _norm(want, keys)
    assert op.rejects.count == 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, a=st.integers(1, 30), b=st.integers(1, 30),
       kind=st.sampled_from([Tumbling(20), Hopping(40, 20), Session(10)]))
async def test_where_batches_are_cut_changes_nothing_even_with_late_rows(
        rows: list[dict[str, Any]], a: int, b: int, kind: Any) -> None:
    keys = ["k", "window_start", "window_end", "n", "s"]
    results = []
    for size in (a, b):
        op = Aggregate(["k"], {"n": "count()", "s": "sum(v)"}, window=kind, time_column="ts",
                       allowed_lateness=5)
        results.append((_norm(await run(op, rows, size), keys), op.rejects.count))
    assert results[0] == results[1]


async def test_late_rows_go_to_dead_letters_or_a_side_output_with_the_reason() -> None:
    t0 = dt.datetime(2024, 5, 1, 12, 0)
    times = [0, 10, 70, 5, 130, 20]  # 5 and 20 arrive after the 0-60 window closed
    rows = [{"k": "a", "v": i, "ts": t0 + dt.timedelta(seconds=s)} for i, s in enumerate(times)]
    dl = MemoryDeadLetterSink()
    op = Aggregate(["k"], {"n": "count()"}, window=Tumbling("1m"), time_column="ts",
                   late="dead_letter", dead_letter=dl)
    got = await run(op, rows, 1, name="orders")
    assert [(r["window_start"], r["n"]) for r in got] == [
        (t0, 2), (t0 + dt.timedelta(minutes=1), 1), (t0 + dt.timedelta(minutes=2), 1)]
    assert [d.row["v"] for d in dl.letters] == [3, 5]
    assert all("late" in d.reason and d.stage == "op:aggregate" and d.pipeline == "orders"
               for d in dl.letters)

    op = Aggregate(["k"], {"n": "count()"}, window=Tumbling(60), time_column="ts",
                   late="side_output")
    sink = CollectingSink()
    await Pipeline(MemorySource(rows, 2, stream="orders"), [op], sink).run()
    side = [r for b in sink.batches if b.stream == "orders.late" for r in b.rows]
    assert [r["v"] for r in side] == [3, 5] and all("_reason" in r for r in side)

    with pytest.raises(Exception) as info:
        await run(Aggregate(["k"], {"n": "count()"}, window=Tumbling(60), time_column="ts",
                            late="fail"), rows, 1)
    assert isinstance(info.value.__cause__, RowsRejected)


async def test_changelog_into_an_upsert_table_ends_equal_to_the_closed_windows(
        tmp_path: Path) -> None:
    import sqlite3

    rng = random.Random(3)
    rows = [{"k": rng.randrange(5), "v": rng.randrange(100), "ts": i // 3} for i in range(3000)]
    closed = await run(Aggregate(["k"], {"n": "count()", "s": "sum(v)"}, window=Session(2),
                                 time_column="ts"), rows, 50)
    db = tmp_path / "t.db"
    sink = SqliteSink(db, table="agg", write_mode="upsert",
                      primary_key=["k", "window_start"])
    await Pipeline(MemorySource(rows, 50), [Aggregate(
        ["k"], {"n": "count()", "s": "sum(v)"}, window=Session(2), time_column="ts",
        emit="changelog")], sink, name="cl").run()
    conn = sqlite3.connect(db)
    table = conn.execute("SELECT k, window_start, window_end, n, s FROM agg").fetchall()
    conn.close()
    keys = ["k", "window_start", "window_end", "n", "s"]
    assert sorted(table) == sorted(tuple(r[k] for k in keys) for r in closed)


async def test_state_over_the_cap_is_a_clear_error() -> None:
    rows = [{"k": i, "v": 1} for i in range(500)]
    with pytest.raises(Exception) as info:
        await run(Aggregate(["k"], {"n": "count()"}, max_state=100), rows, 50)
    assert isinstance(info.value.__cause__, StateLimitExceeded)
    assert "max_state=100" in str(info.value)


async def test_windows_expire_so_state_stays_bounded() -> None:
    op = Aggregate(["k"], {"n": "count()"}, window=Tumbling(10), time_column="ts")
    peak = 0

    class Probe(CollectingSink):
        async def write(self, batch: Batch) -> None:
            nonlocal peak
            peak = max(peak, len(op.groups))

    rows = [{"k": i % 7, "ts": i / 10} for i in range(100_000)]
    await Pipeline(MemorySource(rows, 1000), [op], Probe()).run()
    assert peak <= 7 * 12  # a window or two per key, never the 1,000 windows of the input


async def test_a_value_that_does_not_add_fails_the_batch_without_changing_state() -> None:
    op = Aggregate(["k"], {"s": "sum(v)"})
    await op.process(Batch([{"k": 1, "v": 2}]))
    with pytest.raises(Exception, match="not a number"):
        await op.process(Batch([{"k": 1, "v": 3}, {"k": 1, "v": "x"}]))
    assert op.groups == {(1,): [2]}


def test_bad_specifications_are_config_errors() -> None:
    from etlsync.core.errors import ConfigError

    for kwargs in ({"aggregates": {"x": "median(v)"}}, {"aggregates": {"x": "sum()"}},
                   {"aggregates": {"x": "count()"}, "window": {"tumbling": 5}},
                   {"aggregates": {"k": "count()"}}, {"aggregates": {"x": "sum(v"}},
                   {"aggregates": {"x": "count()"}, "window": {"hopping": 10, "every": 3},
                    "time_column": "t"}):
        with pytest.raises(ConfigError):
            Aggregate(["k"], **kwargs)
