"""``MysqlCdcSource``: change data capture from the binlog, optionally after a snapshot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pymysql

from etlsync.connectors.mysql import events as ev
from etlsync.connectors.mysql import values as v
from etlsync.connectors.mysql.binlog import BinlogStream, Boundary, RowsEvent, Truncate
from etlsync.connectors.mysql.config import (
    MysqlOptions,
    connect,
    discover_tables,
    stream_name,
)
from etlsync.connectors.mysql.source import snapshot_table, split_table
from etlsync.core.batch import Batch, Op, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ServiceNotReady
from etlsync.core.options import renamed_keywords
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Source
from etlsync.log import get_logger

_OPS = {"insert": Op.INSERT, "update": Op.UPDATE, "delete": Op.DELETE}
_LOGICAL: dict[int, ColumnType] = {
    v.TINY: ColumnType.INTEGER, v.SHORT: ColumnType.INTEGER, v.INT24: ColumnType.INTEGER,
    v.LONG: ColumnType.INTEGER, v.LONGLONG: ColumnType.INTEGER, v.YEAR: ColumnType.INTEGER,
    v.BIT: ColumnType.INTEGER, v.FLOAT: ColumnType.FLOAT, v.DOUBLE: ColumnType.FLOAT,
    v.NEWDECIMAL: ColumnType.DECIMAL, v.DATE: ColumnType.DATE, v.TIME2: ColumnType.INTERVAL,
    v.TIME: ColumnType.INTERVAL, v.DATETIME2: ColumnType.DATETIME,
    v.DATETIME: ColumnType.DATETIME, v.TIMESTAMP2: ColumnType.TIMESTAMP,
    v.TIMESTAMP: ColumnType.TIMESTAMP, v.JSON: ColumnType.JSON, v.ENUM: ColumnType.STRING,
    v.SET: ColumnType.STRING,
}
_RECONNECT_ERRORS = (pymysql.err.OperationalError, pymysql.err.InterfaceError,
                     pymysql.err.InternalError, OSError, EOFError)


def table_schema(tm: ev.TableMap) -> Schema:
    """The logical schema of a TABLE_MAP (names, types, nullability, primary key)."""
    cols = []
    for i, name in enumerate(tm.names or []):
        t = tm.types[i]
        if i in tm.data_types:  # MariaDB's UUID, INET6, INET4: text, as SELECT gives it
            lt = ColumnType.UUID if tm.data_types[i] == "uuid" else ColumnType.STRING
        elif t in _LOGICAL:
            lt = _LOGICAL[t]
        elif t in (v.VARCHAR, v.VAR_STRING, v.STRING, v.BLOB):
            lt = ColumnType.BYTES if tm.encodings[i] is None else ColumnType.STRING
        else:
            lt = ColumnType.UNKNOWN
        cols.append(Column(name, lt, tm.nullable[i], f"binlog:{t}"))
    return Schema(tuple(cols), tm.primary_key)


class MysqlCdcSource(Source):
    """Streams inserts, updates and deletes of ``tables`` from the MySQL/MariaDB binlog.

    :param tables: ``"table"`` (in ``database``) or ``"db.table"`` names.
    :param snapshot: first copy the tables (keyset chunks under a consistent snapshot),
        then stream from the binlog position of that snapshot: no gap, no duplicate.
    :param heartbeat: seconds between server heartbeats; idle positions advance with them.
    :param max_batch_rows: a larger transaction is emitted in several batches; only the
        last carries the position.
    :param connection: a ``mysql://`` URI, :class:`MysqlOptions` or a mapping of its fields
        (or pass ``host``, ``port``, ... as keywords).

    Positions: ``{"phase": "stream", "binlog": {"file", "pos", "gtid"}}`` at transaction
    boundaries, or ``{"phase": "snapshot", ...}`` with the table index and last key.
    """

    capabilities = frozenset({Capability.CDC})

    @renamed_keywords({"options": "connection"})
    def __init__(self, tables: Sequence[str], *,
                 connection: MysqlOptions | str | dict[str, Any] | None = None,
                 snapshot: bool = False, chunk_rows: int = 10_000, heartbeat: float = 1.0,
                 max_batch_rows: int = 5_000, idle_position_seconds: float = 1.0,
                 use_gtid: bool = True, server_id: int | None = None,
                 reconnect_attempts: int = 10, name: str = "mysql-cdc", **conn: Any) -> None:
        self.options = MysqlOptions.from_params(connection, **conn)
        self.tables = [split_table(t, self.options.database) for t in tables]
        self._wanted = {(d, t) for d, t in self.tables}
        self.snapshot = snapshot
        self.chunk_rows = chunk_rows
        self.heartbeat = heartbeat
        self.max_batch_rows = max_batch_rows
        self.idle_position_seconds = idle_position_seconds
        self.use_gtid = use_gtid
        self.server_id = server_id
        self.reconnect_attempts = reconnect_attempts
        self.name = name
        self.stream: BinlogStream | None = None
        self.reconnects = 0
        self.resumed_mid_transaction = 0
        self._emitted = 0
        self.log = get_logger(source=name)

    def _stream_name(self, schema: str, table: str) -> str:
        return stream_name(self.options, schema, table)

    async def discover(self) -> dict[str, Schema]:
        return await discover_tables(self.options, self.tables)

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        if position is None or position.get("phase") == "snapshot":
            binlog: dict[str, Any] | None = position["binlog"] if position else None
            if self.snapshot:
                async for batch in self._snapshot(position):
                    yield batch
                    binlog = batch.position["binlog"]
            if binlog is None:
                binlog = await BinlogStream(self.options).current_position()
            position = {"phase": "stream", "binlog": binlog}
            yield Batch([], stream="", position=position)
        async for batch in self._stream(position["binlog"]):
            yield batch

    async def _snapshot(self, position: dict[str, Any] | None) -> AsyncIterator[Batch]:
        conn = await connect(self.options, database=False)
        try:
            async with conn.cursor() as cur:
                await cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                await cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                await cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = dict(await cur.fetchall())
            if "Binlog_snapshot_file" in status:  # MariaDB: the exact snapshot point
                file, pos = status["Binlog_snapshot_file"], int(status["Binlog_snapshot_position"])
                async with conn.cursor() as cur:
                    gtid = await BinlogStream(self.options).gtid_at(cur, file, pos)
                here: dict[str, Any] = {"file": file, "pos": pos, "gtid": gtid}
            else:
                here = await BinlogStream(self.options).current_position()
            # a resumed snapshot keeps streaming from its first position: replays are upserts
            binlog = position["binlog"] if position else here
            start_table = position["table"] if position else 0
            last_key = position.get("last_key") if position else None
            for i in range(start_table, len(self.tables)):
                d, t = self.tables[i]
                stream = self._stream_name(d, t)
                async for rows, key, schema in snapshot_table(conn, d, t, last_key, self.chunk_rows):
                    at = {"phase": "snapshot", "binlog": binlog, "table": i, "last_key": key}
                    yield Batch(rows, stream=stream, position=at, schema=schema)
                last_key = None
                yield Batch([], stream=stream, position={
                    "phase": "snapshot", "binlog": binlog, "table": i + 1, "last_key": None})
            await conn.commit()
        finally:
            conn.close()

    async def _stream(self, start: dict[str, Any]) -> AsyncIterator[Batch]:
        position = start
        failures = 0
        self._emitted = 0  # rows of the open transaction already yielded
        while True:
            stream = self.stream = BinlogStream(
                self.options, position, table_filter=lambda d, t: (d, t) in self._wanted,
                heartbeat=self.heartbeat,
                server_id=self.server_id, use_gtid=self.use_gtid)
            try:
                await stream.connect()
                failures = 0
                async for batch in self._batches(stream, skip=self._emitted):
                    if batch.position is not None:
                        position = batch.position["binlog"]
                    yield batch
            except _RECONNECT_ERRORS as exc:
                if exc.args and exc.args[0] == 1236:  # the server no longer has the position
                    raise ServiceNotReady(
                        f"binlog position {position} is not available on the server any more "
                        f"({exc.args[1] if len(exc.args) > 1 else exc}); the binlog was purged "
                        "or the server failed over without GTIDs: clear this pipeline's "
                        "checkpoint to take a new snapshot (snapshot=True)") from exc
                failures += 1
                if failures > self.reconnect_attempts:
                    raise
                self.reconnects += 1
                if self._emitted:
                    self.resumed_mid_transaction += 1
                delay = min(5.0, 0.1 * 2 ** (failures - 1))
                self.log.warning("binlog connection lost; reconnecting from the last "
                                 "transaction boundary", error=str(exc), delay=delay,
                                 position=position, skip_rows=self._emitted)
                await asyncio.sleep(delay)
            finally:
                stream.close()

    async def _batches(self, stream: BinlogStream, skip: int) -> AsyncIterator[Batch]:
        """Batches from one connection; the first ``skip`` rows of the first transaction
        were yielded before a reconnect and are dropped."""
        pending: list[Batch] = []
        pending_rows = 0
        last_emit = time.monotonic()
        schemas: dict[int, Schema] = {}
        for_stream = self._stream_name
        async for item in stream.items():
            if isinstance(item, Truncate):
                pending.append(_truncate(for_stream(item.schema, item.table)))
                continue
            if isinstance(item, RowsEvent):
                rows, before = item.rows, item.before
                if skip:
                    n = min(skip, len(rows))
                    skip -= n
                    rows = rows[n:]
                    before = before[n:] if before is not None else None
                    if not rows:
                        continue
                tm = item.table
                schema = schemas.get(id(tm))
                if schema is None:
                    schemas.clear()
                    schema = schemas[id(tm)] = table_schema(tm)
                name = for_stream(tm.schema, tm.table)
                op = _OPS[item.op]
                last = pending[-1] if pending else None
                if last is not None and last.stream == name and last.schema is schema:
                    last.rows.extend(rows)
                    assert last.ops is not None
                    last.ops.extend([op] * len(rows))
                    _extend_before(last, before, len(rows))
                else:
                    b = Batch(list(rows), stream=name, ops=[op] * len(rows), schema=schema)
                    _extend_before(b, before, len(rows), new=True)
                    pending.append(b)
                pending_rows += len(rows)
                if pending_rows >= self.max_batch_rows:
                    for b in pending:
                        self._emitted += len(b.rows)
                        yield b
                    pending, pending_rows = [], 0
                continue
            assert isinstance(item, Boundary)
            position = {"phase": "stream", "binlog": item.position}
            now = time.monotonic()
            if pending:
                pending[-1].position = position
                self._emitted = 0
                for b in pending:
                    yield b
                pending, pending_rows, last_emit = [], 0, now
            elif self._emitted:
                self._emitted = 0
                yield Batch([], stream="", position=position)
                last_emit = now
            elif item.kind == "heartbeat" or now - last_emit >= self.idle_position_seconds:
                yield Batch([], stream="", position=position)
                last_emit = now
            skip = 0


def _truncate(stream: str) -> Batch:
    """A TRUNCATE of ``stream`` (as the other CDC sources give it)."""
    return Batch([{}], stream=stream, ops=[Op.TRUNCATE], before=[None])


def _extend_before(b: Batch, before: list[Row] | None, n: int, new: bool = False) -> None:
    if new:
        b.before = list(before) if before is not None else None
        if b.before is None:
            b.before = [None] * n
        return
    assert b.before is not None
    b.before.extend(before if before is not None else [None] * n)
