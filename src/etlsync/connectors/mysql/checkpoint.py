"""The MySQL/MariaDB checkpoint store: a state table (InnoDB) that :class:`MysqlSink` also
writes inside each batch's transaction (its ``checkpoint_store()`` is this store)."""

from __future__ import annotations

from typing import Any

from etlsync.connectors.mysql.config import MysqlOptions, connect, qualified
from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.errors import ConfigError
from etlsync.core.options import renamed_keywords

DEFAULT_STATE_TABLE = "_etlsync_state"


def state_ddl(database: str, table: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {qualified(database, table)} ("
            "`pipeline` VARCHAR(255) NOT NULL PRIMARY KEY, `position` LONGBLOB NOT NULL, "
            "`updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) "
            "ON UPDATE CURRENT_TIMESTAMP(6)) ENGINE=InnoDB")


async def write_checkpoint(cur: Any, database: str, table: str, pipeline: str,
                           checkpoint: Checkpoint) -> None:
    """Upsert ``checkpoint`` (run it inside the data's transaction)."""
    await cur.execute(f"INSERT INTO {qualified(database, table)} (`pipeline`, `position`) "
                      "VALUES (%s, %s) ON DUPLICATE KEY UPDATE `position` = VALUES(`position`)",
                      (pipeline, checkpoint.encode()))


class MysqlCheckpointStore(CheckpointStore):
    """Checkpoints in a MySQL/MariaDB table (``pipeline``, ``position``)."""

    @renamed_keywords({"options": "connection"})
    def __init__(self, connection: MysqlOptions | str | dict[str, Any] | None = None, *,
                 table: str = DEFAULT_STATE_TABLE, database: str | None = None,
                 **conn: Any) -> None:
        self.options = MysqlOptions.from_params(connection, **conn)
        self.database = database or self.options.database or ""
        if not self.database:
            raise ConfigError("MysqlCheckpointStore needs a database")
        self.table = table
        self.location = (f"mysql://{self.options.host}:{self.options.port}/"
                         f"{self.database}#{table}")

    async def _connect(self, create: bool = True) -> Any:
        conn = await connect(self.options, database=False)
        if create:
            async with conn.cursor() as cur:
                await cur.execute(state_ddl(self.database, self.table))
        return conn

    async def _read(self, conn: Any, pipeline: str) -> Checkpoint | None:
        async with conn.cursor() as cur:
            await cur.execute(f"SELECT `position` FROM {qualified(self.database, self.table)} "
                              "WHERE `pipeline`=%s", (pipeline,))
            row = await cur.fetchone()
        return None if row is None else Checkpoint.decode(bytes(row[0]))

    async def load(self, pipeline: str) -> Checkpoint | None:
        conn = await self._connect()
        try:
            return await self._read(conn, pipeline)
        finally:
            conn.close()

    async def peek(self, pipeline: str) -> Checkpoint | None:
        conn = await self._connect(create=False)
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                                  "AND TABLE_NAME=%s", (self.database, self.table))
                if await cur.fetchone() is None:
                    return None
            return await self._read(conn, pipeline)
        finally:
            conn.close()

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        conn = await self._connect()
        try:
            async with conn.cursor() as cur:
                await write_checkpoint(cur, self.database, self.table, pipeline, checkpoint)
        finally:
            conn.close()

    async def reset(self, pipeline: str) -> None:
        conn = await self._connect()
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"DELETE FROM {qualified(self.database, self.table)} "
                                  "WHERE `pipeline`=%s", (pipeline,))
        finally:
            conn.close()
