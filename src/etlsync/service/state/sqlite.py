"""The embedded state database: one SQLite file, statements from concurrent callers grouped
into one transaction (group commit), on one thread."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from typing import Any

from etlsync.connectors.sqlite.checkpoint import connect
from etlsync.core.serial import SerialThread
from etlsync.service.state.store import Database

NOW = "((julianday('now') - 2440587.5) * 86400.0)"


class SqliteDatabase(Database):
    """A SQLite file (WAL, ``synchronous=NORMAL``: a commit survives a process crash).

    Statements issued while a transaction is being written wait and go together in the next
    one (a failing statement is undone alone, the others stay): 1,000 runs starting at once
    cost a few transactions, not 1,000 commits.
    """

    shared = False
    ordered = True

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.url = f"sqlite:{os.path.abspath(self.path)}"
        self.timeout = timeout
        self._serial = SerialThread("etlsync-state")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[str, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        def run() -> sqlite3.Connection:
            return connect(self.path, timeout=self.timeout, synchronous="normal")
        self._conn = await self._serial.run(run)

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        result: list[tuple[Any, ...]] = (await self._submit(sql, args))[0]
        return result

    async def execute(self, sql: str, *args: Any) -> int:
        count: int = (await self._submit(sql, args))[1]
        return count

    async def _submit(self, sql: str, args: tuple[Any, ...]) -> tuple[list[Any], int]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((sql.replace("{now}", NOW), args, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        result: tuple[list[Any], int] = await fut
        return result

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._serial.run(self._run_batch, [(s, a) for s, a, _ in batch])
            except BaseException as exc:  # the transaction itself failed
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else
                                          RuntimeError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, _, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, Exception):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    def _run_batch(self, batch: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        conn = self._conn
        assert conn is not None, "state database not open"
        out: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in batch:
                # a failing statement is undone by SQLite alone (its statement journal);
                # the transaction and the other statements go on
                try:
                    cur = conn.execute(sql, args)
                    out.append((cur.fetchall(), cur.rowcount))
                except sqlite3.Error as exc:
                    if not conn.in_transaction:
                        raise
                    out.append(exc)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return out

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._serial.run(conn.close)
        self._serial.shutdown()
