"""The SQLite checkpoint store: a state table in a SQLite file (the embedded default).

:class:`~etlsync.connectors.sqlite.SqliteSink` writes the same table inside each batch's
transaction; its :meth:`~etlsync.connectors.sqlite.SqliteSink.checkpoint_store` is a store on
its own file, so a pipeline into SQLite is exactly-once without choosing a store. A store in a
file of its own gives at-least-once delivery to any sink.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.serial import SerialThread
from etlsync.sql.identifiers import quote_identifier

STATE_TABLE = "_etlsync_state"


def quote(name: str) -> str:
    """A quoted SQLite identifier."""
    return quote_identifier(name, '"')


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
    """Create the state table if it does not exist (and drop the ``writer`` column of an
    etlsync 0.1 table: the owner of a checkpoint is now the runner's decision)."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(table)} (pipeline TEXT PRIMARY KEY, "
                 "position TEXT NOT NULL, updated_at REAL NOT NULL)")
    columns = {r[1] for r in conn.execute(f"PRAGMA table_info({quote(table)})")}
    if "writer" in columns:
        conn.execute(f"ALTER TABLE {quote(table)} DROP COLUMN writer")


def write_state(conn: sqlite3.Connection, pipeline: str, checkpoint: Checkpoint,
                table: str = STATE_TABLE) -> None:
    """Record ``checkpoint`` for ``pipeline`` (inside the caller's transaction, if any)."""
    conn.execute(f"INSERT INTO {quote(table)} (pipeline, position, updated_at) VALUES (?, ?, ?) "
                 "ON CONFLICT(pipeline) DO UPDATE SET position = excluded.position, "
                 "updated_at = excluded.updated_at",
                 (pipeline, checkpoint.encode().decode(), time.time()))


def read_state(conn: sqlite3.Connection, pipeline: str,
               table: str = STATE_TABLE) -> Checkpoint | None:
    """The checkpoint recorded for ``pipeline``, or ``None``."""
    try:
        row = conn.execute(f"SELECT position FROM {quote(table)} WHERE pipeline = ?",
                           (pipeline,)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else Checkpoint.decode(row[0])


class SqliteCheckpointStore(CheckpointStore):
    """Checkpoints in a SQLite file (created if absent; WAL; one atomic statement each).

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
        self.location = f"sqlite:{os.path.abspath(self.path)}#{table}"
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self.path, timeout=self.timeout, synchronous=self.synchronous)
            ensure_state_table(conn, self.table)
            self._conn = conn
        return self._conn

    async def load(self, pipeline: str) -> Checkpoint | None:
        async with self._lock:
            return await self._serial.run(
                lambda: read_state(self._connection(), pipeline, self.table))

    async def peek(self, pipeline: str) -> Checkpoint | None:
        """The checkpoint, read without creating the file or the table."""
        def run() -> Checkpoint | None:
            if not os.path.exists(self.path):
                return None
            uri = Path(self.path).absolute().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout)
            try:
                return read_state(conn, pipeline, self.table)
            finally:
                conn.close()
        async with self._lock:
            return await self._serial.run(run)

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        async with self._lock:
            await self._serial.run(lambda: write_state(self._connection(), pipeline, checkpoint,
                                                       self.table))

    async def reset(self, pipeline: str) -> None:
        def run() -> None:
            self._connection().execute(f"DELETE FROM {quote(self.table)} WHERE pipeline = ?",
                                       (pipeline,))
        async with self._lock:
            await self._serial.run(run)

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await self._serial.run(conn.close)
            self._serial.shutdown()
