"""The PostgreSQL checkpoint store: a state table that :class:`PostgresSink` also writes
inside each batch's transaction (its ``checkpoint_store()`` is this store on that table)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import asyncpg

from etlsync.connectors.postgres.connection import PgConnectionConfig, qualified
from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.options import renamed_keywords

DEFAULT_STATE_TABLE = "_etlsync_state"


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


async def write_checkpoint(conn: asyncpg.Connection, schema: str, table: str,
                           pipeline: str, checkpoint: Checkpoint) -> None:
    """Upsert ``checkpoint`` for ``pipeline`` (run it inside the data's transaction)."""
    await conn.execute(state_upsert_sql(schema, table), pipeline, checkpoint.encode().decode())


class PostgresCheckpointStore(CheckpointStore):
    """Checkpoints of pipelines in ``schema.table`` (``pipeline text``, ``position jsonb``).

    :param connection: a ``postgresql://`` URI, a :class:`PgConnectionConfig`, or a mapping
        of its fields (``host``, ``password_env``, ``sslmode``, ...); further connection
        keywords are accepted too.
    :param table: the state table (created if absent).
    """

    @renamed_keywords({"dsn": "connection"})
    def __init__(self, connection: PgConnectionConfig | str | Mapping[str, Any] | None = None, *,
                 table: str = DEFAULT_STATE_TABLE, schema: str = "public",
                 **connect_kw: Any) -> None:
        self.config = PgConnectionConfig.coerce(connection, **connect_kw)
        self.table = table
        self.schema = schema
        host, port, database = self.config.identity()
        self.location = f"postgres://{host}:{port}/{database}#{schema}.{table}"
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self.config.connect()
            await ensure_state_table(self._conn, self.schema, self.table)
        return self._conn

    async def load(self, pipeline: str) -> Checkpoint | None:
        conn = await self._connection()
        raw = await conn.fetchval(
            f"SELECT position::text FROM {qualified(self.schema, self.table)} WHERE pipeline = $1",
            pipeline)
        return None if raw is None else Checkpoint.decode(raw)

    async def peek(self, pipeline: str) -> Checkpoint | None:
        """The checkpoint, read without creating the state table."""
        conn = await self.config.connect()
        try:
            if await conn.fetchval("SELECT to_regclass($1)",
                                   qualified(self.schema, self.table)) is None:
                return None
            raw = await conn.fetchval(f"SELECT position::text FROM "
                                      f"{qualified(self.schema, self.table)} WHERE pipeline = $1",
                                      pipeline)
            return None if raw is None else Checkpoint.decode(raw)
        finally:
            await conn.close()

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        conn = await self._connection()
        await write_checkpoint(conn, self.schema, self.table, pipeline, checkpoint)

    async def reset(self, pipeline: str) -> None:
        conn = await self._connection()
        await conn.execute(
            f"DELETE FROM {qualified(self.schema, self.table)} WHERE pipeline = $1", pipeline)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
