"""A pipeline process for the kill -9 tests: ``python -m tests.postgres.load_worker MODE DSN
TABLE ROWS [CSV]``. MODE ``pipeline`` loads generated rows in small batches with the position
stored in the target database; ``passthrough`` loads a CSV file in small chunks; ``arrow``
loads a CSV file through ``CsvSource(engine="arrow")`` and ``Cast`` (arrow-form batches) in
small batches, the position stored in the target database."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

from etlsync import Batch, Pipeline, Source
from etlsync.connectors.files import CsvSource
from etlsync.connectors.postgres import PostgresCheckpointStore, PostgresSink, copy_csv_file
from etlsync.operators import Cast

BATCH = 250


def make_row(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"row-{i}", "qty": i % 97, "note": "x" * (i % 13)}


class Generated(Source):
    """Rows 0..n-1 in batches; the position is the next row number."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        i = int(position or 0)
        while i < self.n:
            end = min(i + BATCH, self.n)
            yield Batch([make_row(j) for j in range(i, end)], stream="gen", position=end)
            i = end
            await asyncio.sleep(0)


async def main(mode: str, dsn: str, table: str, rows: int, csv_path: str = "") -> None:
    if mode == "passthrough":
        # 4 KiB chunks: each is one transaction, so the load lasts long enough for kills to land
        await copy_csv_file(csv_path, dsn, table=table, pipeline=table, chunk_bytes=4 << 10)
        return
    store = PostgresCheckpointStore(dsn)
    sink = PostgresSink(dsn, table=table, write_mode="append")
    source: Source = Generated(rows)
    operators: list[Any] = []
    if mode == "arrow":
        source = CsvSource(csv_path, engine="arrow", batch_size=BATCH)
        operators = [Cast({"id": "integer", "price": "decimal", "at": "datetime"})]
    try:
        await Pipeline(source, operators, [sink], name=table, checkpoint_store=store).run()
    finally:
        await store.close()


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], a[2], int(a[3]), *(a[4:])))
