"""Resilience middleware overhead on the kernel benchmark (source -> map -> filter -> sink).

Side by side in one run, each variant in its own process:

- ``bare``: the kernel pipeline, no middleware.
- ``resilient``: every stage wrapped (ResilientSource, ResilientOperator x2, Resilient sink
  with retry, circuit breaker and a dead-letter sink), no faults: ``ratio_vs_bare``
  (throughput, wall clock) and ``ratio_vs_bare_cpu`` (CPU seconds of bare / of this
  variant) and, with ``--callgrind``, ``ratio_instr_vs_bare`` (instructions counted under
  valgrind on 30,000 rows: unaffected by other load on the machine).
- ``resilient_20pct_faults``: the same with 20% of sink writes failing transiently
  (retried with 1-10 ms full-jitter backoff).
- ``resilient_1pct_bad_rows``: 1% of rows rejected by the sink, isolated by bisection and
  dead-lettered.
- ``pg_bare``, ``pg_resilient``, ``pg_resilient_20pct_faults``: the same rows into PostgreSQL
  through ``PostgresSink`` (binary COPY, position in each batch's transaction), bare, wrapped,
  and wrapped with 20% of writes failing transiently before they reach the server
  (``--pg-dsn``, default ``$ETLSYNC_BENCH_PG_DSN`` or the local test database;
  ``--no-postgres`` skips them).

    python benchmarks/resilience.py --rows 1000000 --json
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_result, count_instructions, parse_args, report, run_variants

VARIANTS = ["bare", "resilient", "resilient_20pct_faults", "resilient_1pct_bad_rows"]
PG_VARIANTS = ["pg_bare", "pg_resilient", "pg_resilient_20pct_faults"]
DEFAULT_DSN = os.environ.get("ETLSYNC_BENCH_PG_DSN",
                             "postgresql://postgres@127.0.0.1:5432/etlsync_test")


def make_rows(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"id": i, "amount": i % 1000, "status": "paid" if i % 3 else "void"}


def transform(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "amount": r["amount"] * 2, "status": r["status"]}


def keep(r: dict[str, Any]) -> bool:
    return bool(r["status"] == "paid")


async def run(variant: str, n: int) -> dict[str, Any]:
    from etlsync import Batch, Filter, Map, Pipeline, Sink, Source, StageContext
    from etlsync.core.errors import DataError
    from etlsync.resilience import (
        CircuitBreaker,
        MemoryDeadLetterSink,
        Resilient,
        ResilientOperator,
        ResilientSource,
        RetryPolicy,
    )

    class GenSource(Source):
        name = "gen"

        async def read(self, position: Any):  # type: ignore[no-untyped-def]
            buf: list[dict[str, Any]] = []
            for r in make_rows(n):
                buf.append(r)
                if len(buf) == 1000:
                    yield Batch(buf, position=r["id"])
                    buf = []
            if buf:
                yield Batch(buf, position=n)

    class CountSink(Sink):
        def __init__(self, fail_p: float = 0.0, bad_every: int = 0) -> None:
            self.count = 0
            self.fail_p = fail_p
            self.bad_every = bad_every
            self.rng = random.Random(1)
            self.failures = 0

        async def open(self, context: StageContext) -> None:
            pass

        async def write(self, batch: Batch) -> None:
            if self.fail_p and self.rng.random() < self.fail_p:
                self.failures += 1
                raise ConnectionResetError("injected")
            if self.bad_every:
                for r in batch.rows:
                    if r["id"] % self.bad_every == 0:
                        raise DataError("amount rejected", row=r)
            self.count += len(batch.rows)

    if variant == "bare":
        sink = CountSink()
        await Pipeline(GenSource(), [Map(transform), Filter(keep)], sink).run(
            handle_signals=False)
        return {"delivered": sink.count}
    fail_p = 0.2 if variant == "resilient_20pct_faults" else 0.0
    bad_every = 101 if variant == "resilient_1pct_bad_rows" else 0
    inner = CountSink(fail_p, bad_every)
    dlq = MemoryDeadLetterSink()
    retry = RetryPolicy(max_attempts=None, base_delay=0.001, max_delay=0.01, max_elapsed=60)
    resilient = Resilient(inner, retry=retry, breaker=CircuitBreaker(failure_threshold=20,
                                                                reset_timeout=0.01),
                     on_bad_data="dead_letter", dead_letter=dlq, max_bad_ratio=0.05)
    ops = [ResilientOperator(Map(transform)), ResilientOperator(Filter(keep))]
    await Pipeline(ResilientSource(GenSource()), ops, resilient).run(handle_signals=False)
    return {"delivered": inner.count, "dead_letters": len(dlq.letters),
            "injected_failures": inner.failures, "retries": resilient.metrics["retries"],
            "breaker_opened": resilient.metrics["breaker_opened"]}


async def run_pg(variant: str, n: int, dsn: str) -> dict[str, Any]:
    import asyncpg

    from etlsync import Batch, Pipeline, Source
    from etlsync.connectors.postgres import PostgresCheckpointStore, PostgresSink
    from etlsync.resilience import CircuitBreaker, Resilient, RetryPolicy

    class GenSource(Source):
        name = "gen"

        async def read(self, position: Any):  # type: ignore[no-untyped-def]
            buf: list[dict[str, Any]] = []
            for r in make_rows(n):
                buf.append(r)
                if len(buf) == 10_000:
                    yield Batch(buf, position=r["id"] + 1)
                    buf = []
            if buf:
                yield Batch(buf, position=n)

    class Faulty(PostgresSink):
        rng = random.Random(1)
        failures = 0

        async def write(self, batch: Batch) -> None:
            if self.rng.random() < 0.2:
                Faulty.failures += 1
                raise ConnectionResetError("injected")
            await super().write(batch)

    table = f"bench_resilience_{variant}_{os.getpid()}"
    state = f"{table}_state"
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'create table "{table}" (id bigint, amount int, status text)')
    try:
        store = PostgresCheckpointStore(dsn, table=state)
        cls = Faulty if variant == "pg_resilient_20pct_faults" else PostgresSink
        sink: Any = cls(dsn, table=table, state_table=state, create=False)
        if variant != "pg_bare":
            sink = Resilient(sink, retry=RetryPolicy(max_attempts=None, base_delay=0.001,
                                                     max_delay=0.01, max_elapsed=120),
                             breaker=CircuitBreaker(failure_threshold=20, reset_timeout=0.01),
                             verify_with=store)
        await Pipeline(GenSource(), sinks=[sink], checkpoint_store=store,
                       name=table).run(handle_signals=False)
        await store.close()
        delivered = await conn.fetchval(f'select count(*) from "{table}"')
        return {"delivered": delivered, "injected_failures": Faulty.failures}
    finally:
        await conn.execute(f'drop table if exists "{table}", "{state}"')
        await conn.close()


def child(variant: str, n: int, dsn: str) -> None:
    import etlsync.resilience  # noqa: F401 - imports are not part of the measurement

    t0, c0 = time.perf_counter(), time.process_time()
    if variant.startswith("pg_"):
        info = asyncio.run(run_pg(variant, n, dsn))
        seconds = time.perf_counter() - t0
        info["cpu_seconds"] = round(time.process_time() - c0, 4)
        if info["delivered"] != n:
            raise SystemExit(f"{variant}: delivered {info['delivered']} of {n} rows")
        child_result(variant, n, seconds, **info)
        return
    info = asyncio.run(run(variant, n))
    seconds = time.perf_counter() - t0
    info["cpu_seconds"] = round(time.process_time() - c0, 4)
    kept = [r["id"] for r in make_rows(n) if keep(r)]
    bad = sum(1 for i in kept if i % 101 == 0) if variant == "resilient_1pct_bad_rows" else 0
    if info["delivered"] != len(kept) - bad or info.get("dead_letters", 0) != bad:
        raise SystemExit(f"{variant}: delivered {info}, expected {len(kept) - bad} + {bad} bad")
    child_result(variant, n, seconds, **info)


def options(parser: Any) -> None:
    parser.add_argument("--pg-dsn", default=DEFAULT_DSN, help="PostgreSQL for the pg_ variants")
    parser.add_argument("--no-postgres", action="store_true", help="skip the pg_ variants")


def main() -> None:
    args = parse_args(__doc__ or "", 1_000_000, options, services=True)
    if args.variant:
        child(args.variant, args.rows, args.pg_dsn)
        return
    variants = VARIANTS + ([] if args.no_postgres else PG_VARIANTS)
    results = run_variants(__file__, variants, args.rows, args.repeat,
                           extra_args=["--pg-dsn", args.pg_dsn])
    for name in variants[1:]:
        bare = results["pg_bare" if name.startswith("pg_") else "bare"]
        r = results[name]
        if name == "pg_bare":
            continue
        if bare.get("rows_per_s") and r.get("rows_per_s"):
            r["ratio_vs_bare"] = round(r["rows_per_s"] / bare["rows_per_s"], 3)
        if bare.get("cpu_seconds") and r.get("cpu_seconds"):
            # CPU time is what the middleware costs; wall time also measures machine load
            r["ratio_vs_bare_cpu"] = round(bare["cpu_seconds"] / r["cpu_seconds"], 3)
    if args.callgrind:  # instructions: the middleware's cost, free of machine load
        counts = count_instructions(__file__, VARIANTS, min(args.rows, 30_000),
                                    extra_args=["--no-postgres"])
        for name, c in counts.items():
            results[name]["instructions"] = c
            if name != "bare" and c:
                results[name]["ratio_instr_vs_bare"] = round(counts["bare"] / c, 3)
    report(results, args.json)


if __name__ == "__main__":
    main()
