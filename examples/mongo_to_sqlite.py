"""Keep a SQLite table in sync with a MongoDB collection: snapshot, then change stream.

    ETLSYNC_MONGO_URI=mongodb://127.0.0.1:27017/?directConnection=true \
        python examples/mongo_to_sqlite.py shop orders orders.db

Each document becomes a row (nested values as JSON text), upserted on ``_id``; deletes
delete. The resume token is stored in the SQLite file in the same transaction as the rows,
so a crash at any point (even ``kill -9``) resumes exactly where the table ends. Stop with
Ctrl-C; ``--idle-timeout S`` ends the run after S quiet seconds instead.
"""

from __future__ import annotations

import argparse
import asyncio

from etlsync.connectors.mongo import MongoChangeStreamSource
from etlsync.connectors.sqlite import SqliteSink
from etlsync.connectors.sqlite.checkpoint import SqliteCheckpointStore
from etlsync.core.pipeline import Pipeline


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database")
    parser.add_argument("collection")
    parser.add_argument("sqlite_path")
    parser.add_argument("--table", default=None, help="target table (default: collection)")
    parser.add_argument("--idle-timeout", type=float, default=None)
    parser.add_argument("--chunk-size", type=int, default=5000, help="snapshot chunk size")
    args = parser.parse_args()

    source = MongoChangeStreamSource(  # URI from the ETLSYNC_MONGO_URI environment variable
        database=args.database,
        collections=args.collection,
        snapshot=True,  # copy the collection first, then stream from before the copy
        flatten="json",
        batch_size=500,
        snapshot_chunk_size=args.chunk_size,
        idle_timeout=args.idle_timeout,
    )
    sink = SqliteSink(args.sqlite_path, table=args.table or args.collection,
                      write_mode="upsert", primary_key=["_id"])
    pipeline = Pipeline(source, [], sink, name=f"mongo-{args.database}-{args.collection}",
                        checkpoint_store=SqliteCheckpointStore(args.sqlite_path))
    summary = await pipeline.run()
    print(f"{summary.status}: {summary.rows_read} changes, checkpoint {summary.commits} times")


if __name__ == "__main__":
    asyncio.run(main())
