"""CSV orders into SQLite, incrementally and exactly-once; then read them back.

    python examples/csv_to_sqlite.py [OUT_DIR]   # default: <tmp>/etlsync-csv-to-sqlite

The first run loads examples/data/orders.csv. Then two rows are appended to a copy of the
file, one of them sharing the last ``updated_at`` value (a tie): the second run reads exactly
those two. The checkpoint lives in the target file, written with every batch (exactly-once).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from etlsync import Pipeline
from etlsync.connectors.files import CsvSource
from etlsync.connectors.sqlite import SqliteSink, SqliteSource
from etlsync.connectors.sqlite.checkpoint import SqliteCheckpointStore
from etlsync.testing import CollectingSink

HERE = Path(__file__).resolve().parent


async def sync(csv_path: Path, db: Path) -> int:
    source = CsvSource(csv_path, sync_mode="incremental", cursor_field="updated_at",
                       primary_key=["id"], batch_size=100)
    sink = SqliteSink(db, table="orders", write_mode="upsert", primary_key=["id"])
    summary = await Pipeline(source, [], [sink], name="orders",
                             checkpoint_store=SqliteCheckpointStore(db)).run()
    return summary.rows_read


def prepare(out: Path) -> tuple[Path, Path]:
    """A fresh copy of the sample CSV and no target yet."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, db = out / "orders.csv", out / "orders.db"
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)
    shutil.copy(HERE / "data" / "orders.csv", csv_path)
    return csv_path, db


def append_rows(csv_path: Path, db: Path) -> None:
    """Append a row that ties with the newest ``updated_at`` and a newer one."""
    last_ts = sqlite3.connect(db).execute("SELECT max(updated_at) FROM orders").fetchone()[0]
    with csv_path.open("a") as f:
        f.write(f"9001,Tie Corp,paid,1,1.00,2024-03-31,{last_ts}\n")
        f.write("9002,Late Ltd,paid,2,2.00,2024-04-01,2099-01-01 00:00:00\n")


async def main(out: Path) -> None:
    csv_path, db = prepare(out)

    first = await sync(csv_path, db)
    append_rows(csv_path, db)
    second = await sync(csv_path, db)
    print(f"first run: {first} rows; second run: {second} rows (a tie and a newer row)")

    reader = CollectingSink()
    await Pipeline(SqliteSource(db, table="orders"), [], [reader]).run()
    print(f"orders table: {len(reader.rows)} rows; last: {reader.rows[-1]}")
    assert second == 2 and len(reader.rows) == first + 2


if __name__ == "__main__":
    default = Path(tempfile.gettempdir()) / "etlsync-csv-to-sqlite"
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
