"""The shared state database: PostgreSQL, for several ``etlsync serve`` instances."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from etlsync.service.state.store import Database

NOW = "extract(epoch from clock_timestamp())::double precision"
_MARK = re.compile(r"\?")


def translate(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, ...`` and ``{now}`` as the server's clock."""
    counter = iter(range(1, 10_000))
    return _MARK.sub(lambda _: f"${next(counter)}", sql.replace("{now}", NOW))


class PostgresDatabase(Database):
    """A PostgreSQL database reached through a small asyncpg pool.

    :param config: a :class:`~etlsync.connectors.postgres.connection.PgConnectionConfig`
        (the password from ``password_env`` / ``password_file``, TLS options).
    """

    shared = True

    def __init__(self, config: Any, *, pool_size: int = 4, schema: str | None = None) -> None:
        self.config, self.schema = config, schema
        host, port, database = config.identity()
        self.url = f"postgresql://{host}:{port}/{database}" + (f"#{schema}" if schema else "")
        self.pool_size = pool_size
        self._pool: Any = None
        self._sql: dict[str, str] = {}

    async def open(self) -> None:
        import asyncpg

        if self.schema is not None:
            from etlsync.connectors.postgres.connection import quote_ident

            conn = await self.config.connect()
            try:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
            except asyncpg.UniqueViolationError:
                pass  # created by another instance at the same moment
            finally:
                await conn.close()
        self._pool = await asyncpg.create_pool(min_size=1, max_size=self.pool_size,
                                               connect=self._connect)

    async def _connect(self, *_: Any, **__: Any) -> Any:
        return await self.config.connect()

    def _translated(self, sql: str) -> str:
        found = self._sql.get(sql)
        if found is None:
            found = self._sql[sql] = translate(sql)
        return found

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        rows = await self._pool.fetch(self._translated(sql), *args)
        return [tuple(r) for r in rows]

    async def execute(self, sql: str, *args: Any) -> int:
        status = await self._pool.execute(self._translated(sql), *args)
        tail = str(status).rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def create(self, statements: Sequence[str]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            # CREATE ... IF NOT EXISTS races between instances starting together
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('etlsync_state_ddl'))")
            for sql in statements:
                await conn.execute(sql)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
