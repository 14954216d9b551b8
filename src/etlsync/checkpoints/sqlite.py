"""The default durable checkpoint store: a table in a SQLite file.

The table (``_etlsync_state``) is shared with :class:`~etlsync.connectors.sqlite.SqliteSink`:
the sink writes the pipeline's position in the same transaction as each batch
(``writer = 'sink'``). A store pointed at the sink's file therefore resumes exactly where the
target's data ends (exactly-once), and its own ``commit`` leaves a row the sink owns alone
(the sink's position is never older than the runner's). A store in a separate file owns its
rows (``writer = 'store'``) and gives at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from typing import Any

from etlsync.core.codec import dumps, loads
from etlsync.core.serial import SerialThread

STATE_TABLE = "_etlsync_state"


def quote(name: str) -> str:
    """A quoted SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


def connect(path: str | os.PathLike[str], *, timeout: float = 30.0,
            synchronous: str = "full") -> sqlite3.Connection:
    """A connection in autocommit mode (explicit ``BEGIN``) with WAL journaling.

    :param synchronous: ``full`` (a commit survives power loss) or ``normal`` (survives a
        process crash; faster).
    """
    sync = synchronous.upper()
    if sync not in ("FULL", "NORMAL", "EXTRA", "OFF"):
        raise ValueError(f"synchronous must be full, normal, extra or off; got {synchronous!r}")
    text = os.fspath(path)
    if text not in ("", ":memory:"):
        os.makedirs(os.path.dirname(os.path.abspath(text)), exist_ok=True)
    conn = sqlite3.connect(text, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    return conn


def ensure_state_table(conn: sqlite3.Connection, table: str = STATE_TABLE) -> None:
    """Create the state table if it does not exist."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {quote(table)} (pipeline TEXT PRIMARY KEY, "
        "position TEXT NOT NULL, writer TEXT NOT NULL, updated_at REAL NOT NULL)")


def write_state(conn: sqlite3.Connection, pipeline: str, position: Any, *, writer: str,
                table: str = STATE_TABLE) -> None:
    """Record ``position`` for ``pipeline`` (inside the caller's transaction, if any).

    A ``store`` write never replaces a row a ``sink`` wrote; a ``sink`` write always does.
    """
    sql = (f"INSERT INTO {quote(table)} (pipeline, position, writer, updated_at) "
           "VALUES (?, ?, ?, ?) ON CONFLICT(pipeline) DO UPDATE SET "
           "position = excluded.position, writer = excluded.writer, "
           "updated_at = excluded.updated_at")
    if writer != "sink":
        sql += f" WHERE {quote(table)}.writer <> 'sink'"
    conn.execute(sql, (pipeline, dumps(position).decode(), writer, time.time()))


def read_state(conn: sqlite3.Connection, pipeline: str, table: str = STATE_TABLE) -> Any | None:
    """The position recorded for ``pipeline``, or ``None``."""
    try:
        row = conn.execute(f"SELECT position FROM {quote(table)} WHERE pipeline = ?",
                           (pipeline,)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else loads(row[0])


class SqliteCheckpointStore:
    """Positions in a SQLite file (created if absent; WAL; one atomic statement per commit).

    Point it at the file of a :class:`~etlsync.connectors.sqlite.SqliteSink` for
    exactly-once runs; give it a file of its own for at-least-once.

    :param path: the database file.
    :param table: the state table's name.
    :param synchronous: ``full`` (default) or ``normal``; see :func:`connect`.
    """

    def __init__(self, path: str | os.PathLike[str], *, table: str = STATE_TABLE,
                 timeout: float = 30.0, synchronous: str = "full") -> None:
        self._serial = SerialThread("etlsync-sqlite-store")
        self.path = os.fspath(path)
        self.table = table
        self.timeout = timeout
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self.path, timeout=self.timeout, synchronous=self.synchronous)
            ensure_state_table(conn, self.table)
            self._conn = conn
        return self._conn

    async def load(self, pipeline: str) -> Any | None:
        """The last committed position of ``pipeline``, or ``None``."""
        async with self._lock:
            return await self._serial.run(
                lambda: read_state(self._connection(), pipeline, self.table))

    async def commit(self, pipeline: str, position: Any) -> None:
        """Durably record ``position`` (a no-op where a sink owns the pipeline's row)."""
        def run() -> None:
            conn = self._connection()
            # a read takes no lock in WAL mode: skip the write (and the lock it would
            # contend for with the sink) when a sink owns the row
            owner = conn.execute(f"SELECT writer FROM {quote(self.table)} WHERE pipeline = ?",
                                 (pipeline,)).fetchone()
            if owner is None or owner[0] != "sink":
                write_state(conn, pipeline, position, writer="store", table=self.table)

        async with self._lock:
            await self._serial.run(run)

    async def delete(self, pipeline: str) -> None:
        """Forget ``pipeline``'s position: its next run starts from the beginning."""
        def run() -> None:
            self._connection().execute(f"DELETE FROM {quote(self.table)} WHERE pipeline = ?",
                                       (pipeline,))
        async with self._lock:
            await self._serial.run(run)

    async def close(self) -> None:
        """Close the connection (it reopens on the next call)."""
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await self._serial.run(conn.close)
                self._serial.shutdown()
