"""Stateful transforms, side by side on the same generated orders data.

- **group-by** (4 group columns, 3 aggregates over 1,000,000 orders held in memory as an arrow
  table): ``group_etlsync`` (a pipeline of arrow batches through ``Aggregate``, its fastest
  path) vs ``group_duckdb`` (the same arrow table scanned by DuckDB), ``group_duckdb_native``
  (DuckDB's own table, loaded before the clock starts), ``group_polars`` and ``group_pandas``
  (their frames made before the clock starts).
- **tumbling window** (count and sum per customer in 1-minute event-time windows over a stream
  of row batches): ``window_etlsync`` vs ``window_bytewax`` (Bytewax's ``fold_window`` with a
  ``TumblingWindower`` and an ``EventClock``, run in-process by ``run_main``).
  ``window_etlsync_interval``: the same with ``StateInterval(batches=50)``.
- **state snapshots** (``--rows`` is the number of groups; ``--variants state_packed,state_codec``):
  one snapshot of an ``Aggregate`` holding that many groups (a 2-column key, 5 aggregates)
  plus the checkpoint's encoding, as the runner does per resume point: ``state_packed``
  (the operator's column-wise packing) vs ``state_codec`` (the same state as nested lists
  through the checkpoint codec, as a plain ``snapshot_state`` would return it).
- **lookup join** of the orders against a 100,000-row PostgreSQL table of customers:
  ``join_etlsync`` (``LookupJoin`` + ``PostgresLookup``, batched lookups behind its cache),
  ``join_etlsync_nocache`` (cache off: one query per batch, like the baseline) vs
  ``join_asyncpg`` (a hand-written loop: per 10,000-row batch, one ``= ANY($1)`` query for its
  distinct keys, then the rows merged in Python).

The data is generated in each variant's own process before the clock starts (the stream
variants generate their batches lazily, inside the timed run, and so do their baselines).

    flock /tmp/etlsync-bench.lock python3 benchmarks/transforms.py --rows 1000000 --json
    flock /tmp/etlsync-bench.lock python3 benchmarks/transforms.py --rows 10000000 \\
        --variants window_etlsync     # flat memory on 10M rows with a bounded key space
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_result, parse_args, report, run_variants

GROUP = ["group_etlsync", "group_duckdb", "group_duckdb_native", "group_polars", "group_pandas"]
WINDOW = ["window_etlsync", "window_etlsync_interval", "window_bytewax"]
JOIN = ["join_etlsync", "join_etlsync_nocache", "join_asyncpg"]
STATE = ["state_packed", "state_codec"]
VARIANTS = GROUP + WINDOW + JOIN + STATE
KEYS = ["region", "status", "channel", "day"]
ARROW_BATCH = 262_144
BATCH = 10_000
CUSTOMERS = 100_000
T0 = dt.datetime(2024, 3, 1)
PG = os.environ.get("ETLSYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/etlsync_test")
PG_TABLE = "bench_transforms_customers"


def orders_table(n: int) -> Any:
    """1M orders: 5 regions x 4 statuses x 3 channels x 30 days = 1,800 groups."""
    import numpy as np
    import pyarrow as pa

    i = np.arange(n)
    pick = lambda values, idx: pa.array(np.array(values, dtype=object)[idx])  # noqa: E731
    return pa.table({
        "region": pick(["north", "south", "east", "west", "central"], i % 5),
        "status": pick(["paid", "pending", "shipped", "refunded"], (i // 5) % 4),
        "channel": pick(["web", "app", "store"], (i // 7) % 3),
        "day": pick([f"2024-03-{d:02d}" for d in range(1, 31)], (i // 11) % 30),
        "amount": pa.array((i % 50_000) / 100.0),
        "quantity": pa.array(i % 13),
        "customer_id": pa.array((i * 7919) % CUSTOMERS),
    })


def events(n: int) -> Iterator[list[tuple[int, int, dt.datetime]]]:
    """A stream of (customer, amount, event time) in batches: 1,000 customers, 50 events a
    second, event times up to 5 s out of order."""
    for start in range(0, n, BATCH):
        yield [(i % 1000, i % 97, T0 + dt.timedelta(milliseconds=20 * i - (i % 7) * 700))
               for i in range(start, min(n, start + BATCH))]


# -- group-by ----------------------------------------------------------------------------------

def _counter(columns: list[str] | None = None) -> Any:
    """A sink counting the rows it gets (reading ``columns`` of each, as a sink binds them)."""
    from etlsync import Batch, Sink

    class Count(Sink):
        name = "count"
        rows = 0

        async def write(self, batch: Batch) -> None:
            self.rows += len(batch.view(columns)) if columns else len(batch)

    return Count()


async def _etlsync_group(table: Any) -> int:
    from etlsync import Batch, Pipeline, Source
    from etlsync.operators import Aggregate

    class ArrowSource(Source):
        name = "arrow"

        async def read(self, position: Any):  # type: ignore[no-untyped-def]
            for i in range(0, table.num_rows, ARROW_BATCH):
                yield Batch.from_arrow(table.slice(i, ARROW_BATCH), position=i)

    sink = _counter()
    agg = Aggregate(KEYS, {"revenue": "sum(amount)", "items": "max(quantity)", "orders": "count()"})
    await Pipeline(ArrowSource(), [agg], sink, name="bench").run(handle_signals=False)
    return sink.rows


def group(variant: str, n: int) -> None:
    """Each engine runs the query once on 10 rows before the clock starts (its first call
    initialises thread pools and plans: a one-off cost, like an import)."""
    table = orders_table(n)
    tiny = table.slice(0, 10)
    sql = (f"SELECT {', '.join(KEYS)}, sum(amount) AS revenue, max(quantity) AS items, "
           "count(*) AS orders FROM t GROUP BY ALL")
    if variant == "group_etlsync":
        asyncio.run(_etlsync_group(tiny))
        t0 = time.perf_counter()
        groups = asyncio.run(_etlsync_group(table))
    elif variant.startswith("group_duckdb"):
        import duckdb

        con = duckdb.connect()
        con.register("t", tiny)
        con.sql(sql).to_arrow_table()
        con.unregister("t")
        con.register("src", table)
        if variant == "group_duckdb_native":
            con.execute("CREATE TABLE t AS SELECT * FROM src")
        else:
            con.register("t", table)
        t0 = time.perf_counter()
        groups = con.sql(sql).to_arrow_table().num_rows
    elif variant == "group_polars":
        import polars as pl

        def run(frame: Any) -> int:
            return int(frame.group_by(KEYS).agg(pl.col("amount").sum().alias("revenue"),
                                                pl.col("quantity").max().alias("items"),
                                                pl.len().alias("orders")).height)
        run(pl.from_arrow(tiny))
        df = pl.from_arrow(table)
        t0 = time.perf_counter()
        groups = run(df)
    else:
        def agg(frame: Any) -> int:
            return len(frame.groupby(KEYS, sort=False).agg(
                revenue=("amount", "sum"), items=("quantity", "max"), orders=("amount", "size")))
        agg(tiny.to_pandas())
        df = table.to_pandas()
        t0 = time.perf_counter()
        groups = agg(df)
    child_result(variant, n, time.perf_counter() - t0, groups=groups)


# -- tumbling windows ----------------------------------------------------------------------------

async def _etlsync_window(n: int, every: int) -> int:
    from etlsync import Batch, Pipeline, Source, StateInterval
    from etlsync.operators import Aggregate, Tumbling

    class Events(Source):
        name = "events"

        async def read(self, position: Any):  # type: ignore[no-untyped-def]
            for i, chunk in enumerate(events(n)):
                yield Batch.from_records(("customer", "amount", "at"), chunk, position=i)

    sink = _counter()
    agg = Aggregate(["customer"], {"n": "count()", "total": "sum(amount)"},
                    window=Tumbling("1m"), time_column="at", allowed_lateness="5s")
    await Pipeline(Events(), [agg], sink, name="bench",
                   state_interval=StateInterval(batches=every)).run(handle_signals=False)
    return sink.rows


def _bytewax_window(n: int) -> int:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
    from bytewax.testing import TestingSink, TestingSource, run_main

    def items() -> Iterator[tuple[int, int, dt.datetime]]:
        for chunk in events(n):
            yield from chunk

    flow = Dataflow("bench")
    stream = op.input("in", flow, TestingSource(items(), batch_size=BATCH))
    keyed = op.key_on("key", stream, lambda e: str(e[0]))
    utc = dt.UTC
    clock = EventClock(lambda e: e[2].replace(tzinfo=utc),
                       wait_for_system_duration=dt.timedelta(seconds=5))
    windower = TumblingWindower(length=dt.timedelta(minutes=1),
                                align_to=T0.replace(tzinfo=utc))
    out = fold_window("w", keyed, clock, windower, lambda: (0, 0),
                      lambda acc, e: (acc[0] + 1, acc[1] + e[1]),
                      lambda a, b: (a[0] + b[0], a[1] + b[1]))
    got: list[Any] = []
    op.output("out", out.down, TestingSink(got))
    run_main(flow)
    return len(got)


def window(variant: str, n: int) -> None:
    if variant == "window_bytewax":
        import bytewax.operators  # noqa: F401

        t0 = time.perf_counter()
        windows = _bytewax_window(n)
    else:
        import etlsync.operators.aggregate  # noqa: F401

        t0 = time.perf_counter()
        windows = asyncio.run(_etlsync_window(n, 50 if variant.endswith("interval") else 1))
    child_result(variant, n, time.perf_counter() - t0, windows=windows)


# -- lookup join ------------------------------------------------------------------------------

async def _prepare_customers() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG)
    try:
        have = await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname = $1", PG_TABLE)
        if have and await conn.fetchval(f"SELECT count(*) FROM {PG_TABLE}") == CUSTOMERS:
            return
        await conn.execute(f"DROP TABLE IF EXISTS {PG_TABLE}")
        await conn.execute(f"CREATE TABLE {PG_TABLE} (id bigint PRIMARY KEY, name text, "
                           "tier text, country text)")
        await conn.copy_records_to_table(PG_TABLE, records=[
            (i, f"customer {i}", ("gold", "silver", "basic")[i % 3], ("DE", "FR", "US")[i % 3])
            for i in range(CUSTOMERS)])
    finally:
        await conn.close()


def _join_batches(n: int) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, n, BATCH):
        yield [(i, (i * 7919) % CUSTOMERS, (i % 50_000) / 100.0)
               for i in range(start, min(n, start + BATCH))]


async def _etlsync_join(n: int, cache: int) -> int:
    from etlsync import Batch, Pipeline, Source
    from etlsync.operators import LookupJoin, PostgresLookup

    class Orders(Source):
        name = "orders"

        async def read(self, position: Any):  # type: ignore[no-untyped-def]
            for i, chunk in enumerate(_join_batches(n)):
                yield Batch.from_records(("id", "customer_id", "amount"), chunk, position=i)

    sink = _counter(["id", "name", "tier"])
    join = LookupJoin(PostgresLookup(PG, PG_TABLE, "id", columns=["name", "tier"]),
                      {"customer_id": "id"}, cache_size=cache, ttl=300)
    await Pipeline(Orders(), [join], sink, name="bench").run(handle_signals=False)
    return sink.rows


async def _asyncpg_join(n: int) -> int:
    import asyncpg

    conn = await asyncpg.connect(PG)
    rows = 0
    try:
        stmt = await conn.prepare(f"SELECT id, name, tier FROM {PG_TABLE} WHERE id = ANY($1)")
        for chunk in _join_batches(n):
            keys = list({r[1] for r in chunk})
            found = {rec[0]: (rec[1], rec[2]) for rec in await stmt.fetch(keys)}
            none = (None, None)
            out = [r + found.get(r[1], none) for r in chunk]
            rows += len(out)
    finally:
        await conn.close()
    return rows


def join(variant: str, n: int) -> None:
    if variant == "join_asyncpg":
        import asyncpg  # noqa: F401

        t0 = time.perf_counter()
        rows = asyncio.run(_asyncpg_join(n))
    else:
        import etlsync.operators.join  # noqa: F401

        t0 = time.perf_counter()
        rows = asyncio.run(_etlsync_join(n, 0 if variant.endswith("nocache") else 200_000))
    child_result(variant, n, time.perf_counter() - t0, rows_joined=rows)


def state(variant: str, n: int) -> None:
    from decimal import Decimal

    from etlsync.core.checkpoint import Checkpoint
    from etlsync.operators import Aggregate

    agg = Aggregate(["region", "customer"], {"n": "count()", "s": "sum(amount)", "lo": "min(amount)",
                                              "hi": "max(amount)", "a": "avg(amount)"})
    agg.groups = {(f"r{i % 7}", i): [i % 13, Decimal(i) / 100, Decimal(i % 50), Decimal(i), Decimal(i),
                                    i % 13] for i in range(n)}
    rounds = 5
    t0 = time.perf_counter()
    for _ in range(rounds):
        if variant == "state_packed":
            snap = agg.snapshot_state()
        else:
            snap = [[list(k), list(a)] for k, a in agg.groups.items()]
        size = len(Checkpoint(0, True, {"op:aggregate": snap}).encode())
    seconds = (time.perf_counter() - t0) / rounds
    child_result(variant, n, seconds, encoded_mb=round(size / 1e6, 2))


def child(variant: str, n: int) -> None:
    if variant in STATE:
        state(variant, n)
    elif variant in GROUP:
        group(variant, n)
    elif variant in WINDOW:
        window(variant, n)
    else:
        join(variant, n)


def _ratio(results: dict[str, dict[str, Any]], ours: str, base: str, key: str) -> None:
    a, b = results.get(ours), results.get(base)
    if a and b and "error" not in a and "error" not in b and a["seconds"] and b["seconds"]:
        a[key] = round(b["seconds"] / a["seconds"], 3)


def main() -> None:
    def extra(p: Any) -> None:
        p.add_argument("--variants", help="comma-separated subset of " + ",".join(VARIANTS))

    args = parse_args(__doc__ or "", 1_000_000, extra)
    if args.variant:
        child(args.variant, args.rows)
        return
    chosen = args.variants.split(",") if args.variants else VARIANTS
    if any(v in JOIN for v in chosen):
        asyncio.run(_prepare_customers())
    results = run_variants(__file__, chosen, args.rows, args.repeat)
    for base in ("duckdb", "duckdb_native", "polars", "pandas"):
        _ratio(results, "group_etlsync", f"group_{base}", f"ratio_vs_{base}")
    for ours in ("window_etlsync", "window_etlsync_interval"):
        _ratio(results, ours, "window_bytewax", "ratio_vs_bytewax")
    for ours in ("join_etlsync", "join_etlsync_nocache"):
        _ratio(results, ours, "join_asyncpg", "ratio_vs_asyncpg")
    _ratio(results, "state_packed", "state_codec", "ratio_vs_codec")
    report(results, args.json)


if __name__ == "__main__":
    main()
