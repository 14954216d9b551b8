"""A checkpoint store in a PostgreSQL table: the same table :class:`PostgresSink` writes in each
batch's transaction, so a store pointing at the target database gives exactly-once loads."""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

import asyncpg

from etlsync.connectors.postgres.connection import PgConnectionConfig, qualified
from etlsync.core.codec import dumps, loads

DEFAULT_STATE_TABLE = "_etlsync_state"

_WRITTEN: dict[tuple[Any, ...], deque[bytes]] = {}
"""Positions an open :class:`PostgresSink` stored inside its batch transactions, per row."""


def _state_key(config: PgConnectionConfig, schema: str, table: str,
               pipeline: str) -> tuple[Any, ...]:
    return (*config.identity(), schema, table, pipeline)


def register_transactional(config: PgConnectionConfig, schema: str, table: str,
                           pipeline: str, open_: bool) -> deque[bytes] | None:
    """Open (or drop) the record of positions a sink writes in its own transactions for
    ``pipeline``'s state row. :meth:`PostgresCheckpointStore.commit` skips a position found
    there: a second, separate write could land after a newer in-transaction write and move
    the position back, and a crash would then replay a batch that is already stored."""
    key = _state_key(config, schema, table, pipeline)
    if not open_:
        _WRITTEN.pop(key, None)
        return None
    return _WRITTEN.setdefault(key, deque(maxlen=256))


def state_table_ddl(schema: str, table: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {qualified(schema, table)} ("
            "pipeline text PRIMARY KEY, position jsonb NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now())")


def state_upsert_sql(schema: str, table: str) -> str:
    return (f"INSERT INTO {qualified(schema, table)} AS s (pipeline, position, updated_at) "
            "VALUES ($1, $2::jsonb, now()) ON CONFLICT (pipeline) DO UPDATE "
            "SET position = EXCLUDED.position, updated_at = now()")


async def ensure_state_table(conn: asyncpg.Connection, schema: str, table: str) -> None:
    """Create the state table if it is missing (safe when several sessions race)."""
    with contextlib.suppress(asyncpg.UniqueViolationError):  # a concurrent CREATE
        await conn.execute(state_table_ddl(schema, table))


async def write_position(conn: asyncpg.Connection, schema: str, table: str,
                         pipeline: str, position: Any) -> bytes:
    """Upsert ``position`` for ``pipeline`` (run it inside the data's transaction); return
    its encoding."""
    raw = dumps(position)
    await conn.execute(state_upsert_sql(schema, table), pipeline, raw.decode())
    return raw


class PostgresCheckpointStore:
    """Positions of pipelines in ``schema.table`` (``pipeline text``, ``position jsonb``).

    :param dsn: a DSN string or a :class:`PgConnectionConfig`.
    :param table: the state table (created if absent).

    ``commit`` upserts the position in its own transaction, except while a
    :class:`PostgresSink` of this process writes the same row inside each batch's transaction
    (exactly-once): then the sink's write is the commit and ``commit`` does nothing.
    """

    def __init__(self, dsn: PgConnectionConfig | str | None = None, *,
                 table: str = DEFAULT_STATE_TABLE, schema: str = "public",
                 **connection: Any) -> None:
        self.config = PgConnectionConfig.coerce(dsn, **connection)
        self.table = table
        self.schema = schema
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self.config.connect()
            await ensure_state_table(self._conn, self.schema, self.table)
        return self._conn

    async def load(self, pipeline: str) -> Any | None:
        conn = await self._connection()
        raw = await conn.fetchval(
            f"SELECT position::text FROM {qualified(self.schema, self.table)} WHERE pipeline = $1",
            pipeline)
        return None if raw is None else loads(raw)

    async def commit(self, pipeline: str, position: Any) -> None:
        written = _WRITTEN.get(_state_key(self.config, self.schema, self.table, pipeline))
        if written is not None and dumps(position) in written:
            return  # a sink stored it in the batch's transaction already
        conn = await self._connection()
        await write_position(conn, self.schema, self.table, pipeline, position)

    async def reset(self, pipeline: str) -> None:
        """Forget ``pipeline``'s position (the next run starts from the beginning)."""
        conn = await self._connection()
        await conn.execute(
            f"DELETE FROM {qualified(self.schema, self.table)} WHERE pipeline = $1", pipeline)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
