"""Stream a MariaDB/MySQL table into SQLite: a consistent snapshot, then binlog changes,
upserted on the primary key with the checkpoint in the same SQLite transaction
(exactly-once: kill it at any point and start it again).

    MYSQL_PASSWORD=... python examples/mysql_cdc_to_sqlite.py --database shop --table orders \\
        --target orders.sqlite

``--demo`` creates a small ``etlsync_demo`` table first and stops after ``--seconds``.
The server needs log_bin, binlog_format=ROW, binlog_row_image=FULL (and, for column names
that survive DDL, binlog_row_metadata=FULL).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from etlsync.connectors.mysql import MysqlCdcSource, MysqlOptions
from etlsync.connectors.mysql.config import connect
from etlsync.connectors.sqlite import SqliteSink
from etlsync.connectors.sqlite.checkpoint import SqliteCheckpointStore
from etlsync.core.pipeline import Pipeline


async def create_demo(options: MysqlOptions, table: str) -> None:
    conn = await connect(options)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE TABLE IF NOT EXISTS `{table}` "
                              "(id INT PRIMARY KEY, v INT, s VARCHAR(40))")
            await cur.execute(f"INSERT IGNORE INTO `{table}` VALUES "
                              + ",".join(f"({i}, {i}, 'row {i}')" for i in range(100)))
    finally:
        conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("MYSQL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MYSQL_PORT", "3306")))
    parser.add_argument("--user", default=os.environ.get("MYSQL_USER", "root"))
    parser.add_argument("--database", default="etlsync_test")
    parser.add_argument("--table", default="etlsync_demo")
    parser.add_argument("--target", default="etlsync_demo.sqlite")
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long")
    parser.add_argument("--demo", action="store_true", help="create a demo table first")
    args = parser.parse_args()

    options = MysqlOptions(host=args.host, port=args.port, user=args.user,
                           password_env="MYSQL_PASSWORD" if "MYSQL_PASSWORD" in os.environ else None,
                           database=args.database)
    if args.demo:
        await create_demo(options, args.table)
        args.seconds = args.seconds or 3.0
    source = MysqlCdcSource([args.table], connection=options, snapshot=True,
                            chunk_rows=args.chunk_rows, heartbeat=0.5)
    sink = SqliteSink(args.target, table=args.table, write_mode="upsert")
    pipeline = Pipeline(source, sinks=[sink], name=f"mysql-{args.database}-{args.table}",
                        checkpoint_store=SqliteCheckpointStore(args.target))
    if args.seconds:
        asyncio.get_running_loop().call_later(args.seconds, pipeline.stop)
    summary = await pipeline.run()
    print(f"{summary.status}: {summary.rows_read} rows read; "
          f"position {summary.committed_position}")


if __name__ == "__main__":
    asyncio.run(main())
