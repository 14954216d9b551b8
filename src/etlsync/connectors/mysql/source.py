"""``MysqlSource``: full snapshots by keyset pagination and incremental cursor reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

from etlsync.connectors.mysql.config import (
    MysqlOptions,
    connect,
    discover_tables,
    load_schema,
    qualified,
    quote,
    stream_name,
)
from etlsync.connectors.mysql.values import float32_shortest
from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.incremental import Watermark
from etlsync.core.modes import SyncMode
from etlsync.core.options import renamed_keywords
from etlsync.core.schema import ColumnType, Schema
from etlsync.core.stages import Source

"""Position key marking the last batch of a complete pass (the project-wide convention:
sinks that replace their target swap when they see it)."""


def split_table(name: str, database: str | None) -> tuple[str, str]:
    """``"db.table"`` or ``"table"`` (in ``database``) as ``(db, table)``."""
    if "." in name:
        d, t = name.split(".", 1)
        return d, t
    if not database:
        raise ConfigError(f"table {name!r} needs a database: pass database= or 'db.table'")
    return database, name


def _is_float32(native: str) -> bool:
    return native.lower().startswith("float")


def select_list(schema: Schema) -> str:
    """The columns of ``schema`` for a snapshot SELECT: FLOAT and DOUBLE as ``CAST(... AS
    DOUBLE)``, the exact stored value (the text protocol prints FLOAT with 6 digits,
    16777216 as 16777200, and FLOAT(M,D)/DOUBLE(M,D) with D decimals), which
    :func:`_fixer` turns into what the binlog gives."""
    return ", ".join(f"CAST({quote(c.name)} AS DOUBLE) AS {quote(c.name)}"
                     if c.type == ColumnType.FLOAT else quote(c.name) for c in schema.columns)


def _fixer(schema: Schema) -> Any:
    """Make snapshot values match what the binlog decoder yields (UTC-aware TIMESTAMP,
    BIT as int, zero dates as NULL, FLOAT as the shortest decimal of its 32 bits)."""
    fixes: list[tuple[str, Any]] = []
    for c in schema.columns:
        if _is_float32(c.native):
            fixes.append((c.name, float32_shortest))
        elif c.type == ColumnType.TIMESTAMP:
            fixes.append((c.name, lambda x: x.replace(tzinfo=dt.UTC)
                          if isinstance(x, dt.datetime) else None))
        elif c.native.startswith("bit"):
            fixes.append((c.name, lambda x: int.from_bytes(x, "big") if isinstance(x, bytes) else x))
        elif c.type in (ColumnType.DATE, ColumnType.DATETIME):
            fixes.append((c.name, lambda x: x if isinstance(x, (dt.date, dt.datetime)) else None))
    if not fixes:
        return None

    def fix(rows: list[Row]) -> None:
        for row in rows:
            for name, f in fixes:
                x = row[name]
                if x is not None:
                    row[name] = f(x)
    return fix


def _after(key_cols: Sequence[str], n_params: int) -> str:
    """Keyset predicate ``(k1, k2, ...) > (%s, ...)`` in a form indexes use."""
    ors = []
    for i in range(len(key_cols)):
        eqs = [f"{quote(k)} = %s" for k in key_cols[:i]]
        ors.append("(" + " AND ".join([*eqs, f"{quote(key_cols[i])} > %s"]) + ")")
    return "(" + " OR ".join(ors) + ")"


def _after_params(key: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for i in range(len(key)):
        out.extend(key[:i + 1])
    return out


async def snapshot_table(conn: Any, database: str, table: str, last_key: Any, chunk: int,
                         ) -> AsyncIterator[tuple[list[Row], Any, Schema]]:
    """Chunks of ``database.table`` ordered by its primary key after ``last_key``; yields
    ``(rows, key of the last row, schema)``."""
    import aiomysql

    schema = await load_schema(conn, database, table)
    if schema is None:
        raise ConfigError(f"table {database}.{table} does not exist")
    pk = list(schema.primary_key)
    if not pk:
        raise ConfigError(f"table {database}.{table} has no primary key: keyset snapshots need one")
    fix = _fixer(schema)
    cols = select_list(schema)
    order = ", ".join(quote(k) for k in pk)
    base = f"SELECT {cols} FROM {qualified(database, table)}"
    key = list(last_key) if last_key is not None else None
    async with conn.cursor(aiomysql.DictCursor) as cur:
        while True:
            if key is None:
                await cur.execute(f"{base} ORDER BY {order} LIMIT {int(chunk)}")
            else:
                await cur.execute(f"{base} WHERE {_after(pk, len(key))} ORDER BY {order} "
                                  f"LIMIT {int(chunk)}", _after_params(key))
            rows = list(await cur.fetchall())
            if not rows:
                return
            if fix is not None:
                fix(rows)
            key = [rows[-1][k] for k in pk]
            yield rows, key, schema
            if len(rows) < chunk:
                return


class MysqlSource(Source):
    """Reads tables: a full snapshot in primary-key chunks (resumable mid-table), or
    incremental reads of rows whose ``cursor_field`` is ``>=`` the watermark.

    :param tables: ``"table"`` or ``"db.table"`` names.
    :param sync_mode: ``full_refresh`` or ``incremental``.
    :param cursor_field: the growing column for incremental mode (pushed down as ``>=``).

    The last batch of a pass is empty and marked ``end_of_pass`` (``PASSES``): the next full
    refresh starts over; the next incremental run continues from the watermark.
    """

    capabilities = frozenset({Capability.PASSES})

    @renamed_keywords({"options": "connection", "chunk_rows": "batch_size"})
    def __init__(self, tables: Sequence[str] | str, *,
                 connection: MysqlOptions | str | dict[str, Any] | None = None,
                 sync_mode: SyncMode | str = SyncMode.FULL_REFRESH, cursor_field: str | None = None,
                 batch_size: int = 10_000, name: str = "mysql", **conn: Any) -> None:
        self.options = MysqlOptions.from_params(connection, **conn)
        names = [tables] if isinstance(tables, str) else list(tables)
        self.tables = [split_table(t, self.options.database) for t in names]
        self.mode = SyncMode(sync_mode)
        if self.mode == SyncMode.INCREMENTAL and not cursor_field:
            raise ConfigError("MysqlSource: incremental mode needs cursor_field")
        if self.mode == SyncMode.CDC:
            raise ConfigError("MysqlSource: use MysqlCdcSource for cdc mode")
        self.cursor_field = cursor_field
        self.batch_size = batch_size
        self.name = name

    def _stream(self, d: str, t: str) -> str:
        return stream_name(self.options, d, t)

    async def discover(self) -> dict[str, Schema]:
        return await discover_tables(self.options, self.tables)

    def next_pass(self, position: Any) -> Any | None:
        if self.mode == SyncMode.INCREMENTAL and isinstance(position, dict):
            return {"watermarks": position.get("watermarks", {})}
        return None

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        conn = await connect(self.options, database=False)
        try:
            if self.mode == SyncMode.INCREMENTAL:
                async for b in self._incremental(conn, position or {}):
                    yield b
                return
            if position is None:
                position = {"table": 0, "last_key": None}
            last_key = position.get("last_key")
            for i in range(position["table"], len(self.tables)):
                d, t = self.tables[i]
                async for rows, key, schema in snapshot_table(conn, d, t, last_key, self.batch_size):
                    yield Batch(rows, stream=self._stream(d, t), schema=schema,
                                position={"table": i, "last_key": key})
                last_key = None
                yield Batch([], stream=self._stream(d, t),
                            position={"table": i + 1, "last_key": None},
                            end_of_pass=i + 1 == len(self.tables))
        finally:
            conn.close()

    async def _incremental(self, conn: Any, position: dict[str, Any]) -> AsyncIterator[Batch]:
        import aiomysql

        assert self.cursor_field is not None
        state = dict(position.get("watermarks", {}))
        for d, t in self.tables:
            stream = self._stream(d, t)
            schema = await load_schema(conn, d, t)
            if schema is None:
                raise ConfigError(f"table {d}.{t} does not exist")
            if self.cursor_field not in schema:
                raise ConfigError(f"table {d}.{t} has no cursor column {self.cursor_field!r}")
            pk = list(schema.primary_key)
            wm = Watermark.from_state(self.cursor_field, pk, state.get(stream))
            fix = _fixer(schema)
            order_cols = [self.cursor_field, *pk]
            cols = select_list(schema)
            base = f"SELECT {cols} FROM {qualified(d, t)}"
            order = ", ".join(quote(c) for c in order_cols)
            cf = quote(self.cursor_field)
            last: list[Any] | None = None
            async with conn.cursor(aiomysql.DictCursor) as cur:
                while True:
                    if last is not None:
                        await cur.execute(f"{base} WHERE {_after(order_cols, len(last))} "
                                          f"ORDER BY {order} LIMIT {int(self.batch_size)}",
                                          _after_params(last))
                    elif wm.value is not None:
                        await cur.execute(f"{base} WHERE {cf} >= %s ORDER BY {order} "
                                          f"LIMIT {int(self.batch_size)}", (wm.value,))
                    else:
                        await cur.execute(f"{base} WHERE {cf} IS NOT NULL ORDER BY {order} "
                                          f"LIMIT {int(self.batch_size)}")
                    rows = list(await cur.fetchall())
                    if not rows:
                        break
                    if fix is not None:
                        fix(rows)
                    last = [rows[-1][c] for c in order_cols]
                    admitted = wm.admit(rows)
                    state[stream] = wm.to_state()
                    yield Batch(admitted, stream=stream, schema=schema,
                                position={"watermarks": dict(state)})
                    if len(rows) < self.batch_size:
                        break
        yield Batch([], position={"watermarks": dict(state)}, end_of_pass=True)
