"""Copy a PostgreSQL table into another one, exactly once, then keep it up to date
incrementally.

    ETLSYNC_PG_DSN=postgresql://postgres@127.0.0.1/etlsync_test python examples/postgres_sync.py

The password (if any) comes from ``PGPASSWORD`` or ``password_env``/``password_file``; TLS
from ``sslmode=...&sslrootcert=...`` in the DSN or the matching keywords.
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from etlsync import Pipeline
from etlsync.connectors.postgres import PostgresCheckpointStore, PostgresSink, PostgresSource

DSN = os.environ.get("ETLSYNC_PG_DSN", "postgresql://postgres@127.0.0.1/etlsync_test")
PREFIX = sys.argv[1] if len(sys.argv) > 1 else "example"
SOURCE, TARGET = f"{PREFIX}_orders", f"{PREFIX}_orders_copy"


async def sync(store: PostgresCheckpointStore) -> int:
    """One incremental run: rows whose ``updated_at`` reached the stored watermark."""
    source = PostgresSource(DSN, table=SOURCE, sync_mode="incremental",
                            cursor_field="updated_at", batch_size=500)
    # upsert on the primary key; the position is stored in the same transaction as the rows
    sink = PostgresSink(DSN, table=TARGET, write_mode="upsert", conflict="overwrite")
    summary = await Pipeline(source, [], [sink], name=f"{PREFIX}_orders_sync",
                             checkpoint_store=store).run()
    return summary.rows_read


async def main() -> None:
    conn = await asyncpg.connect(DSN)
    store = PostgresCheckpointStore(DSN)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{SOURCE}", "{TARGET}"')
        await conn.execute(f'CREATE TABLE "{SOURCE}" (id int PRIMARY KEY, status text, '
                           "amount numeric(10,2), updated_at timestamptz NOT NULL)")
        await conn.execute(f"INSERT INTO \"{SOURCE}\" SELECT i, 'new', i * 1.5, "
                           "'2024-01-01'::timestamptz + i * interval '1 minute' "
                           "FROM generate_series(1, 2000) i")
        print("first run read", await sync(store), "rows")
        await conn.execute(f"UPDATE \"{SOURCE}\" SET status = 'paid', updated_at = now() "
                           "WHERE id <= 10")
        print("second run read", await sync(store), "rows")
        paid = await conn.fetchval(f"SELECT count(*) FROM \"{TARGET}\" WHERE status = 'paid'")
        total = await conn.fetchval(f'SELECT count(*) FROM "{TARGET}"')
        print(f"target has {total} rows, {paid} paid")
    finally:
        await conn.execute(f'DROP TABLE IF EXISTS "{SOURCE}", "{TARGET}"')
        await conn.execute("DELETE FROM _etlsync_state WHERE pipeline = $1",
                           f"{PREFIX}_orders_sync")
        await store.close()
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
