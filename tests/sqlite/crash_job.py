"""A CSV -> SQLite job for the kill -9 test: ``python crash_job.py CSV DB STORE MODE BATCH``.

MODE ``append``: the checkpoint lives in the target (exactly-once). MODE ``upsert``: a
separate store file (at-least-once; the upsert removes replays).
"""

from __future__ import annotations

import asyncio
import sys

from etlsync import Pipeline
from etlsync.connectors.files import CsvSource
from etlsync.connectors.sqlite import SqliteSink
from etlsync.connectors.sqlite.checkpoint import SqliteCheckpointStore


async def main(csv_path: str, db: str, store: str, mode: str, batch: int) -> None:
    sink = SqliteSink(db, table="t", write_mode=mode,
                      primary_key=["id"] if mode == "upsert" else (), synchronous="normal")
    pipeline = Pipeline(CsvSource(csv_path, batch_size=batch), [], [sink], name="crash",
                        checkpoint_store=SqliteCheckpointStore(store, synchronous="normal"))
    print("running", flush=True)
    await pipeline.run()
    print("completed", flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], a[2], a[3], int(a[4])))
