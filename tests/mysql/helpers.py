"""Shared helpers for the MySQL/MariaDB tests (real server, no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from etlsync.connectors.mysql.binlog import BinlogStream, Boundary, RowsEvent
from etlsync.connectors.mysql.config import MysqlOptions, connect
from etlsync.core.batch import Batch
from etlsync.core.stages import Source


def options(mysql_params: dict[str, Any]) -> MysqlOptions:
    return MysqlOptions.from_params(mysql_params)


async def execute(opts: MysqlOptions, *statements: str, sql_mode: str | None = None) -> None:
    conn = await connect(opts)
    try:
        async with conn.cursor() as cur:
            if sql_mode is not None:
                await cur.execute("SET SESSION sql_mode = %s", (sql_mode,))
            for s in statements:
                await cur.execute(s)
    finally:
        conn.close()


async def fetch(opts: MysqlOptions, sql: str, dict_rows: bool = True) -> list[Any]:
    import aiomysql

    conn = await connect(opts)
    try:
        async with conn.cursor(aiomysql.DictCursor if dict_rows else aiomysql.Cursor) as cur:
            await cur.execute(sql)
            return list(await cur.fetchall())
    finally:
        conn.close()


async def collect_changes(stream: BinlogStream, n_rows: int, timeout: float = 20.0,
                          ) -> list[RowsEvent]:
    """Row events until ``n_rows`` rows arrived and their transaction committed."""
    out: list[RowsEvent] = []
    got = 0

    async def run() -> None:
        nonlocal got
        async for item in stream.items():
            if isinstance(item, RowsEvent):
                out.append(item)
                got += len(item.rows)
            elif isinstance(item, Boundary) and got >= n_rows:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def binlog_and_select(opts: MysqlOptions, table: str, inserts: list[str],
                            stream_class: type[BinlogStream] = BinlogStream
                            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows ``inserts`` write, as the binlog decodes them and as a plain SELECT gives
    them, by id (the inserts run with an empty sql_mode)."""
    stream = stream_class(opts, table_filter=lambda d, t: t == table)
    await stream.connect()
    try:
        await execute(opts, *inserts, sql_mode="")
        n = len(await fetch(opts, f"SELECT 1 FROM `{table}`"))
        events = await collect_changes(stream, n)
    finally:
        stream.close()
    decoded = sorted((r for e in events for r in e.rows), key=lambda r: r["id"])
    return decoded, await fetch(opts, f"SELECT * FROM `{table}` ORDER BY id")


class ListSource(Source):
    """A source yielding prepared batches (positions 1, 2, ... where unset)."""

    name = "list"

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        start = position if isinstance(position, int) else 0
        for i, b in enumerate(self.batches[start:], start + 1):
            if b.position is None:
                b.position = i
            yield b
