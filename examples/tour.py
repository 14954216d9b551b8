"""The README's five-minute tour: a pipeline with a map, a filter and two sinks.

    python examples/tour.py
"""

import asyncio

from etlsync import Filter, Map, Pipeline
from etlsync.testing import CollectingSink, MemorySource


async def main() -> None:
    rows = [{"id": i, "price": str(i * 10)} for i in range(10_000)]
    warehouse, audit = CollectingSink("warehouse"), CollectingSink("audit")
    pipeline = Pipeline(
        MemorySource(rows, batch_size=1000),
        [Map(lambda r: {**r, "price": int(r["price"])}), Filter(lambda r: r["price"] > 100)],
        [warehouse, audit],
        name="tour",
    )
    summary = await pipeline.run()  # in a notebook: summary = await pipeline.run()
    print(summary)
    print("committed position:", summary.committed_position)
    for stage, m in summary.stages.items():
        print(f"  {stage:<16} in={m.rows_in:>6} out={m.rows_out:>6} busy={m.busy_seconds:.3f}s")
    assert len(warehouse.rows) == len(audit.rows) == 9_989


if __name__ == "__main__":
    asyncio.run(main())
