"""A CSV -> windowed aggregate -> SQLite job for the kill -9 test:
``python agg_crash_job.py CSV DB MODE BATCH EVERY``.

MODE ``close``: windows are appended when they close; ``changelog``: upserts keyed by group
and window; ``whole``: one result per key at the end of the pass (an upsert table). The
checkpoint (with the aggregate's state) lives in the target's own transactions; EVERY > 1
snapshots the state only every EVERY batches (StateInterval).
"""

from __future__ import annotations

import asyncio
import sys

from etlsync import Pipeline, StateInterval
from etlsync.connectors.files import CsvSource
from etlsync.connectors.sqlite import SqliteSink
from etlsync.operators import Aggregate, Cast, Tumbling

AGGS = {"n": "count()", "s": "sum(v)", "lo": "min(v)", "hi": "max(v)", "d": "count_distinct(v)"}


async def main(csv_path: str, db: str, mode: str, batch: int, every: int) -> None:
    if mode == "whole":
        agg = Aggregate(["k"], AGGS, emit="close")
        sink = SqliteSink(db, table="agg", write_mode="upsert", primary_key=["k"],
                          synchronous="normal")
    else:
        agg = Aggregate(["k"], AGGS, window=Tumbling(10), time_column="ts",
                        allowed_lateness=30, emit=mode)
        sink = SqliteSink(db, table="agg", synchronous="normal",
                          write_mode="append" if mode == "close" else "upsert",
                          primary_key=[] if mode == "close" else ["k", "window_start"])
    ops = [Cast({"v": "integer", "ts": "integer"}), agg]
    pipeline = Pipeline(CsvSource(csv_path, batch_size=batch), ops, [sink], name="agg",
                        state_interval=StateInterval(batches=every))
    print("running", flush=True)
    await pipeline.run()
    print("completed", flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], a[2], int(a[3]), int(a[4])))
