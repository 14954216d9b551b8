"""Load a CSV file into PostgreSQL with typed columns on the arrow path: pyarrow parses the
file, ``Cast`` converts whole columns, the sink COPYs them as CSV; exactly once.

    ETLSYNC_PG_DSN=postgresql://postgres@127.0.0.1/etlsync_test \\
        python examples/csv_to_postgres_arrow.py [TABLE_PREFIX]

Needs pyarrow (``pip install 'etlsync[parquet]'``).
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
import tempfile
from pathlib import Path

import asyncpg

from etlsync import Pipeline
from etlsync.connectors.files import CsvSource
from etlsync.connectors.postgres import PostgresCheckpointStore, PostgresSink
from etlsync.operators import Cast

DSN = os.environ.get("ETLSYNC_PG_DSN", "postgresql://postgres@127.0.0.1/etlsync_test")
PREFIX = sys.argv[1] if len(sys.argv) > 1 else "example"
TABLE = f"{PREFIX}_orders_arrow"


def write_orders(path: Path, rows: int) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "customer", "quantity", "price", "ordered_at"])
        for i in range(rows):
            w.writerow([i, f"customer {i % 7}", i % 5 + 1, f"{i % 100}.50",
                        f"2024-03-{i % 28 + 1:02d} 12:{i % 60:02d}:00"])


async def main() -> None:
    conn = await asyncpg.connect(DSN)
    store = PostgresCheckpointStore(DSN)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "orders.csv"
            write_orders(path, 5_000)
            await conn.execute(f'DROP TABLE IF EXISTS "{TABLE}"')
            summary = await Pipeline(
                CsvSource(path, engine="arrow", batch_size=1_000),
                [Cast({"id": "integer", "quantity": "integer", "price": "decimal",
                       "ordered_at": "datetime"})],
                [PostgresSink(DSN, table=TABLE, write_mode="upsert", primary_key=["id"])],
                name=TABLE, checkpoint_store=store).run()
        print("read", summary.rows_read, "rows")
        types = dict(await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = $1", TABLE))
        print("price is", types["price"], "and ordered_at is", types["ordered_at"])
        total = await conn.fetchval(f'SELECT sum(price * quantity) FROM "{TABLE}"')
        print("order total", total)
    finally:
        await conn.execute(f'DROP TABLE IF EXISTS "{TABLE}"')
        await conn.execute("DELETE FROM _etlsync_state WHERE pipeline = $1", TABLE)
        await store.close()
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
