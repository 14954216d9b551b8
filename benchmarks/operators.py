"""Column operators on CSV-like rows: select, rename, cast (int, Decimal, date, datetime) and
an expression filter, through a pipeline.

Side by side in one run, each variant in its own process, all on the same generated rows of
strings (as a CSV reader yields them):

- ``plain_python``: the same conversions hand-written in one synchronous loop (the floor);
- ``etlsync_job_operators``: ``Pipeline(source, [Select, Rename, Cast, FilterExpr], sink)``
  with the operators fused as a job file gets them (``select`` + ``rename`` in one step,
  ``cast`` in place);
- ``etlsync_job_operators_records``: the same with the source yielding record-form batches
  (value lists plus column names, as ``CsvSource`` does): no dict is built on the way;
- ``etlsync_operators_unfused``: the same four operators as written, each copying rows;
- ``etlsync_callable_filter``: fused, with ``Filter(lambda)`` instead of the expression.

    python benchmarks/operators.py --rows 1000000 --json
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_result, parse_args, report, run_variants

VARIANTS = ["plain_python", "etlsync_job_operators", "etlsync_job_operators_records",
            "etlsync_operators_unfused", "etlsync_callable_filter"]
BATCH = 10_000
EXPR = "status != 'test' and quantity > 0"


def make_rows(n: int) -> Iterator[dict[str, Any]]:
    base = dt.datetime(2024, 3, 1)
    statuses = ("paid", "pending", "shipped", "test")
    for i in range(n):
        t = base + dt.timedelta(seconds=i)
        yield {"id": str(i), "customer": f"c{i % 977}", "status": statuses[i % 4],
               "quantity": str(i % 13), "price": f"{i % 50000 / 100:.2f}",
               "order_date": t.date().isoformat(), "updated_at": t.isoformat(sep=" "),
               "junk": "x"}


def run_plain(n: int) -> int:
    kept = 0
    for r in make_rows(n):
        row = {"id": int(r["id"]), "customer_name": r["customer"], "status": r["status"],
               "quantity": int(r["quantity"]), "price": Decimal(r["price"]),
               "order_date": dt.date.fromisoformat(r["order_date"]),
               "updated_at": dt.datetime.fromisoformat(r["updated_at"])}
        if row["status"] != "test" and row["quantity"] > 0:
            kept += 1
    return kept


async def run_etlsync(n: int, callable_filter: bool, fused: bool = True,
                      records: bool = False) -> int:
    from etlsync import Batch, Filter, Pipeline, Sink, Source
    from etlsync.jobs.build import fuse
    from etlsync.operators import Cast, FilterExpr, Rename, Select

    class GenSource(Source):
        name = "gen"

        async def read(self, position: Any):  # type: ignore[no-untyped-def]
            # records: value lists in column order, as CsvSource yields them
            buf: list[Any] = []
            columns = list(next(make_rows(1)))
            for i, r in enumerate(make_rows(n)):
                buf.append(list(r.values()) if records else r)
                if len(buf) == BATCH or i + 1 == n:
                    yield (Batch.from_records(columns, buf, stream="orders", position=i + 1)
                           if records else Batch(buf, stream="orders", position=i + 1))
                    buf = []

    class CountSink(Sink):
        name = "count"
        rows = 0

        async def write(self, batch: Batch) -> None:
            self.rows += len(batch)

    cols = ["id", "customer", "status", "quantity", "price", "order_date", "updated_at"]
    filt = (Filter(lambda r: r["status"] != "test" and r["quantity"] > 0) if callable_filter
            else FilterExpr(EXPR))
    sink = CountSink()
    ops = [Select(cols), Rename({"customer": "customer_name"}),
           Cast({"id": "integer", "quantity": "integer", "price": "decimal",
                 "order_date": "date", "updated_at": "datetime"}),
           filt]
    await Pipeline(GenSource(), fuse(ops) if fused else ops, [sink],
                   name="bench").run(handle_signals=False)
    return sink.rows


def child(variant: str, n: int) -> None:
    if variant != "plain_python":
        import etlsync.operators  # noqa: F401 - imports are not part of the measurement
    t0 = time.perf_counter()
    if variant == "plain_python":
        kept = run_plain(n)
    else:
        kept = asyncio.run(run_etlsync(n, variant == "etlsync_callable_filter",
                                       fused=variant != "etlsync_operators_unfused",
                                       records=variant == "etlsync_job_operators_records"))
    child_result(variant, n, time.perf_counter() - t0, rows_kept=kept)


def main() -> None:
    args = parse_args(__doc__ or "", 200_000)
    if args.variant:
        child(args.variant, args.rows)
        return
    results = run_variants(__file__, VARIANTS, args.rows, args.repeat)
    floor = results.get("plain_python", {}).get("seconds")
    for r in results.values():
        if floor and "seconds" in r and "error" not in r:
            r["ratio_vs_plain_python"] = round(r["seconds"] / floor, 2)
    report(results, args.json)


if __name__ == "__main__":
    main()
