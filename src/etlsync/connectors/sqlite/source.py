"""SqliteSource: a table or a query, full refresh or incremental on a cursor column."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from etlsync.connectors.sqlite._values import READERS, adapt, logical_type
from etlsync.connectors.sqlite.checkpoint import quote
from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.incremental import Watermark
from etlsync.core.modes import SyncMode
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.serial import SerialThread
from etlsync.core.stages import Source


def table_schema(conn: sqlite3.Connection, table: str) -> Schema | None:
    """The schema of ``table`` from its declared types, or ``None`` if it does not exist."""
    info = conn.execute(f"PRAGMA table_info({quote(table)})").fetchall()
    if not info:
        return None
    cols = tuple(Column(r[1], logical_type(r[2] or ""), not r[3] and not r[5], r[2] or "")
                 for r in info)
    pk = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
    return Schema(cols, pk)


class SqliteSource(Source):
    """Rows of a SQLite table or query, read in a worker thread ``batch_size`` rows at a time.

    Full refresh reads a table in ``rowid`` order (resuming after the last committed rowid)
    and a query in its own order (resuming by row count: give it an ``ORDER BY``).
    Incremental reads rows whose ``cursor_field`` is ``>=`` the watermark, ordered by it, and
    skips the keys already delivered at the watermark (the rule of
    :mod:`etlsync.core.incremental`), so ties are neither lost nor duplicated.

    Values of a table's columns come back as their declared types say (see
    :mod:`etlsync.connectors.sqlite._values`): DECIMAL_TEXT as ``Decimal``, DATE as ``date``...

    :param table: the table to read; or ``query``: a SELECT.
    :param primary_key: tells rows with equal cursor values apart (default: the table's).
    """

    name = "sqlite"
    capabilities = frozenset({Capability.PASSES})

    def __init__(self, path: str | os.PathLike[str], *, table: str | None = None,
                 query: str | None = None, stream: str | None = None, batch_size: int = 10_000,
                 sync_mode: SyncMode | str = SyncMode.FULL_REFRESH,
                 cursor_field: str | None = None, primary_key: Sequence[str] = (),
                 timeout: float = 30.0) -> None:
        self._serial = SerialThread("etlsync-sqlite-source")
        if (table is None) == (query is None):
            raise ConfigError("SqliteSource needs exactly one of table= or query=")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.path = os.fspath(path)
        self.table = table
        self.query = query.strip().rstrip(";") if query is not None else None
        self.stream = stream or table or "query"
        self.batch_size = batch_size
        self.sync_mode = SyncMode(sync_mode)
        if self.sync_mode == SyncMode.CDC:
            raise ConfigError("SqliteSource: sync_mode 'cdc' is not supported")
        if self.sync_mode == SyncMode.INCREMENTAL and not cursor_field:
            raise ConfigError("SqliteSource: incremental sync needs cursor_field")
        self.cursor_field = cursor_field
        self.primary_key = tuple(primary_key)
        self.timeout = timeout

    def _connect(self) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            raise ConfigError(f"SqliteSource: no database file {self.path!r}")
        uri = Path(self.path).absolute().as_uri() + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=self.timeout, check_same_thread=False)

    def _from(self) -> str:
        return quote(self.table) if self.table is not None else f"({self.query})"

    def _schema(self, conn: sqlite3.Connection) -> Schema:
        if self.table is not None:
            schema = table_schema(conn, self.table)
            if schema is None:
                raise ConfigError(f"SqliteSource: no table {self.table!r} in {self.path}")
            if self.primary_key:
                schema = Schema(schema.columns, self.primary_key)
            return schema
        cur = conn.execute(f"SELECT * FROM {self._from()} LIMIT 0")
        cols = tuple(Column(d[0], ColumnType.UNKNOWN) for d in cur.description)
        return Schema(cols, self.primary_key)

    async def discover(self) -> dict[str, Schema]:
        def run() -> Schema:
            conn = self._connect()
            try:
                return self._schema(conn)
            finally:
                conn.close()
        return {self.stream: await self._serial.run(run)}

    def next_pass(self, position: Any) -> Any | None:
        """A full refresh starts over; an incremental pass continues from the watermark."""
        if self.sync_mode == SyncMode.INCREMENTAL and isinstance(position, dict):
            return {"wm": position.get("wm")}
        return None

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        pos = dict(position) if isinstance(position, dict) else {}
        wm_state = pos.get("wm")
        conn = await self._serial.run(self._connect)
        try:
            schema = await self._serial.run(self._schema, conn)
            convert = [(c.name, READERS[c.type]) for c in schema.columns if c.type in READERS]
            if self.sync_mode == SyncMode.INCREMENTAL:
                assert self.cursor_field is not None
                pk = self.primary_key or schema.primary_key
                wm = Watermark.from_state(self.cursor_field, pk, wm_state)
                async for batch in self._incremental(conn, wm, schema, convert):
                    yield batch
                end: dict[str, Any] = {"wm": wm.to_state()}
            else:
                end = pos
                async for batch in self._full(conn, pos, schema, convert):
                    end = batch.position
                    yield batch
        finally:
            await self._serial.run(conn.close)
            self._serial.shutdown()
        yield Batch([], stream=self.stream, position=end, schema=schema, end_of_pass=True)

    @staticmethod
    def _rows(names: list[str], raw: list[Any], convert: list[tuple[str, Callable[[Any], Any]]],
              skip_first: bool) -> list[Row]:
        rows = ([dict(zip(names, r[1:], strict=True)) for r in raw] if skip_first
                else [dict(zip(names, r, strict=True)) for r in raw])
        for name, fn in convert:
            for row in rows:
                v = row[name]
                if v is not None:
                    row[name] = fn(v)
        return rows

    async def _full(self, conn: sqlite3.Connection, pos: dict[str, Any], schema: Schema,
                    convert: list[tuple[str, Callable[[Any], Any]]]) -> AsyncIterator[Batch]:
        names = schema.names
        by_rowid = self.table is not None and "offset" not in pos
        cur: sqlite3.Cursor | None = None
        if by_rowid:
            try:
                cur = await self._serial.run(
                    conn.execute, f"SELECT rowid, * FROM {self._from()} WHERE rowid > ? "
                    "ORDER BY rowid", (int(pos.get("rowid", -(2**63))),))
            except sqlite3.OperationalError:
                by_rowid = False
        offset = int(pos.get("offset", 0))
        if not by_rowid:
            order = ""
            if self.table is not None and schema.primary_key:
                order = " ORDER BY " + ", ".join(quote(k) for k in schema.primary_key)
            cur = await self._serial.run(
                conn.execute, f"SELECT * FROM {self._from()}{order} LIMIT -1 OFFSET ?", (offset,))
        assert cur is not None
        while True:
            raw = await self._serial.run(cur.fetchmany, self.batch_size)
            if not raw:
                return
            if by_rowid:
                p: dict[str, Any] = {"rowid": raw[-1][0]}
            else:
                offset += len(raw)
                p = {"offset": offset}
            rows = self._rows(names, raw, convert, by_rowid)
            yield Batch(rows, stream=self.stream, position=p, schema=schema)

    async def _incremental(self, conn: sqlite3.Connection, wm: Watermark, schema: Schema,
                           convert: list[tuple[str, Callable[[Any], Any]]]
                           ) -> AsyncIterator[Batch]:
        cf = quote(wm.cursor_field)
        order = ", ".join([cf, *(quote(k) for k in wm.primary_key)])
        args: tuple[Any, ...]
        if wm.value is None:
            sql, args = f"SELECT * FROM {self._from()} WHERE {cf} IS NOT NULL ORDER BY {order}", ()
        else:
            sql = f"SELECT * FROM {self._from()} WHERE {cf} >= ? ORDER BY {order}"
            args = (adapt(wm.value),)
        cur = await self._serial.run(conn.execute, sql, args)
        names = schema.names
        while True:
            raw = await self._serial.run(cur.fetchmany, self.batch_size)
            if not raw:
                return
            rows = wm.admit(self._rows(names, raw, convert, False))
            if rows:
                yield Batch(rows, stream=self.stream, schema=schema,
                            position={"wm": wm.to_state()})
