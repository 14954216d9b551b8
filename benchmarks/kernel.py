"""Kernel throughput: N small rows through source -> map -> filter -> sink.

Side by side in one run: etlsync, a plain synchronous generator chain (the floor), aiostream,
and asyncio.Queue one row per message. Each variant runs in its own process.

    python benchmarks/kernel.py --rows 1000000 --json
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    add_instruction_ratios,
    child_result,
    count_instructions,
    parse_args,
    report,
    run_variants,
)

VARIANTS = ["sync_generators", "etlsync", "aiostream", "asyncio_queue_per_row"]


def make_rows(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"id": i, "amount": i % 1000, "status": "paid" if i % 3 else "void"}


def transform(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "amount": r["amount"] * 2, "status": r["status"]}


def keep(r: dict[str, Any]) -> bool:
    return bool(r["status"] == "paid")


def run_sync(n: int) -> int:
    count = 0
    for _ in (r for r in (transform(r) for r in make_rows(n)) if keep(r)):
        count += 1
    return count


async def run_etlsync(n: int) -> int:
    from etlsync import Batch, Filter, Map, Pipeline, Sink, Source, StageContext

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
        count = 0

        async def open(self, context: StageContext) -> None:
            pass

        async def write(self, batch: Batch) -> None:
            self.count += len(batch.rows)

    sink = CountSink()
    await Pipeline(GenSource(), [Map(transform), Filter(keep)], sink).run(handle_signals=False)
    return sink.count


async def run_aiostream(n: int) -> int:
    from aiostream import pipe, stream

    async def agen() -> AsyncIterator[dict[str, Any]]:
        for r in make_rows(n):
            yield r

    xs = (stream.iterate(agen()) | pipe.map(transform)  # type: ignore[arg-type]
          | pipe.filter(keep))
    count = 0
    async with xs.stream() as s:
        async for _ in s:
            count += 1
    return count


async def run_queue(n: int) -> int:
    q1: asyncio.Queue[Any] = asyncio.Queue(1000)
    q2: asyncio.Queue[Any] = asyncio.Queue(1000)
    done = object()

    async def produce() -> None:
        for r in make_rows(n):
            await q1.put(r)
        await q1.put(done)

    async def middle() -> None:
        while (r := await q1.get()) is not done:
            r = transform(r)
            if keep(r):
                await q2.put(r)
        await q2.put(done)

    async def consume() -> int:
        c = 0
        while (await q2.get()) is not done:
            c += 1
        return c

    _, _, count = await asyncio.gather(produce(), middle(), consume())
    return count


def child(variant: str, n: int) -> None:
    if variant == "etlsync":
        import etlsync  # noqa: F401  (imports are not part of the measurement)
    elif variant == "aiostream":
        import aiostream  # noqa: F401
    t0 = time.perf_counter()
    if variant == "sync_generators":
        count = run_sync(n)
    elif variant == "etlsync":
        count = asyncio.run(run_etlsync(n))
    elif variant == "aiostream":
        count = asyncio.run(run_aiostream(n))
    else:
        count = asyncio.run(run_queue(n))
    seconds = time.perf_counter() - t0
    if n == 0:
        child_result(variant, n, seconds or 1e-9)
        return
    expected = n - (n + 2) // 3  # rows whose id is not a multiple of 3
    if count != expected:
        raise SystemExit(f"{variant}: delivered {count} rows, expected {expected}")
    child_result(variant, n, seconds)


def main() -> None:
    args = parse_args(__doc__ or "", 1_000_000)
    if args.variant:
        child(args.variant, args.rows)
        return
    results = run_variants(__file__, VARIANTS, args.rows, args.repeat)
    ours = results["etlsync"]
    baselines = {"sync_generators": "ratio_vs_sync", "aiostream": "ratio_vs_aiostream",
                 "asyncio_queue_per_row": "ratio_vs_asyncio_queue"}
    if "rows_per_s" in ours:
        for base, key in baselines.items():
            if results[base].get("rows_per_s"):
                ours[key] = round(ours["rows_per_s"] / results[base]["rows_per_s"], 3)
    if args.callgrind:
        counts = count_instructions(__file__, VARIANTS, min(args.rows, 30_000))
        add_instruction_ratios(results, counts, "etlsync", baselines)
    report(results, args.json)


if __name__ == "__main__":
    main()
