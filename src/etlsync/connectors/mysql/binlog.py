"""An asyncio binlog client: registers as a replica, dumps from a GTID position or from
file + position, verifies and strips checksums, and yields decoded changes and
transaction boundaries.

The stream is a sequence of :class:`RowsEvent` and :class:`Boundary` items. A boundary
carries the position *after* a committed transaction (or after a heartbeat while idle);
resuming from it never re-reads or skips a transaction.
"""

from __future__ import annotations

import random
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from etlsync.connectors.mysql import _wire
from etlsync.connectors.mysql import events as ev
from etlsync.connectors.mysql.config import MysqlOptions, connect
from etlsync.connectors.mysql.gtid import MariaGtidPos, MysqlGtidSet
from etlsync.core.errors import ServiceNotReady
from etlsync.log import get_logger

COM_BINLOG_DUMP, COM_REGISTER_SLAVE, COM_BINLOG_DUMP_GTID = 0x12, 0x15, 0x1E

TableFilter = Callable[[str, str], bool]
SchemaLoader = Callable[[str, str], Any]


@dataclass(slots=True)
class RowsEvent:
    """Decoded rows of one row event: ``op`` is insert, update or delete."""

    table: ev.TableMap
    op: str
    rows: list[dict[str, Any]]
    before: list[dict[str, Any]] | None


@dataclass(slots=True)
class Boundary:
    """A transaction boundary (``commit``) or an idle heartbeat, with the position after it."""

    position: dict[str, Any]
    kind: str = "commit"
    ddl: str | None = None
    schema: str | None = None


class BinlogStream:
    """One replication connection. Iterate :meth:`items`; call :meth:`close` when done.

    :param start: a position as yielded in :class:`Boundary` (keys ``file``/``pos`` and/or
        ``gtid`` for MariaDB, ``gtid_set`` for MySQL); ``None`` starts at the current end.
    :param table_filter: ``(schema, table) -> bool``; rows of other tables are not decoded.
    :param schema_loader: async ``(schema, table) -> list[ColumnInfo]`` for degraded mode,
        used when TABLE_MAP events carry no column names.
    :param heartbeat: seconds between server heartbeats while idle.
    """

    def __init__(self, options: MysqlOptions, start: dict[str, Any] | None = None, *,
                 table_filter: TableFilter | None = None, schema_loader: Any = None,
                 heartbeat: float = 1.0, server_id: int | None = None,
                 use_gtid: bool = True) -> None:
        self.options = options
        self.start = dict(start) if start else None
        self.table_filter = table_filter
        self.schema_loader = schema_loader
        self.heartbeat = heartbeat
        self.server_id = server_id or random.randint(0x40000000, 0x7FFFFFFF)
        self.use_gtid = use_gtid
        self.conn: Any = None
        self.thread_id: int | None = None
        self.streaming = False
        self.mariadb = True
        self.log = get_logger(component="mysql-binlog")
        self._warned_metadata = False
        self._columns_cache: dict[tuple[str, str], Any] = {}
        self._maps: dict[bytes, ev.TableMap | None] = {}  # TABLE_MAP bytes -> decoded

    async def current_position(self, conn: Any = None) -> dict[str, Any]:
        """The server's current binlog end as a position (a transaction boundary)."""
        own = conn is None
        conn = conn or await connect(self.options, database=False)
        try:
            async with conn.cursor() as cur:
                await cur.execute("SHOW MASTER STATUS")
                row = await cur.fetchone()
                if row is None:
                    raise ServiceNotReady("binary logging is off: set log_bin (and "
                                          "binlog_format=ROW) on the server")
                file, pos = row[0], int(row[1])
                return await self._position_at(cur, file, pos, row)
        finally:
            if own:
                conn.close()

    async def _position_at(self, cur: Any, file: str, pos: int, status_row: Any) -> dict[str, Any]:
        await cur.execute("SELECT VERSION()")
        version = (await cur.fetchone())[0]
        if "mariadb" in version.lower():
            await cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
            gtid = (await cur.fetchone())[0]
            return {"file": file, "pos": pos, "gtid": gtid or ""}
        gtid_set = status_row[4] if len(status_row) > 4 else ""
        return {"file": file, "pos": pos, "gtid_set": (gtid_set or "").replace("\n", "")}

    async def connect(self) -> None:
        """Open the connection, check the server settings, register and start the dump."""
        conn = self.conn = await connect(self.options, database=False)
        async with conn.cursor() as cur:
            await cur.execute("SELECT VERSION(), @@global.binlog_format, @@global.binlog_checksum, "
                              "@@global.binlog_row_image, CONNECTION_ID()")
            version, fmt, checksum, image, self.thread_id = await cur.fetchone()
            self.mariadb = "mariadb" in version.lower()
            if fmt != "ROW":
                raise ServiceNotReady(f"binlog_format is {fmt}; CDC needs binlog_format=ROW")
            if image != "FULL":
                raise ServiceNotReady(f"binlog_row_image is {image}; CDC needs FULL")
            if self.start is None:
                self.start = await self.current_position(conn)
            await cur.execute("SET @master_binlog_checksum = @@global.binlog_checksum")
            await cur.execute("SET @source_binlog_checksum = @@global.binlog_checksum"
                              if not self.mariadb else "SET @mariadb_slave_capability = 4")
            await cur.execute("SET @master_heartbeat_period = %s", (int(self.heartbeat * 1e9),))
            gtid = self.start.get("gtid") if self.mariadb else None
            if self.mariadb and self.use_gtid and gtid:
                await cur.execute("SET @slave_connect_state = %s", (gtid,))
                await cur.execute("SET @slave_gtid_strict_mode = 0")
                await cur.execute("SET @slave_gtid_ignore_duplicates = 0")
        self.checksum = checksum != "NONE"
        self.gtid = MariaGtidPos.parse(self.start.get("gtid"))
        self.gtid_set = MysqlGtidSet.parse(self.start.get("gtid_set"))
        self.file = str(self.start.get("file") or "")
        self.pos = int(self.start.get("pos") or 4)
        host = b"etlsync"
        await _wire.command_ok(conn, COM_REGISTER_SLAVE, struct.pack(
            "<IB", self.server_id, len(host)) + host + b"\0\0" + struct.pack("<HII", 0, 0, 0))
        gtid_set = self.start.get("gtid_set")
        if self.mariadb and self.use_gtid and gtid:
            payload = struct.pack("<IHI", 4, 0, self.server_id)
            await _wire.send_command(conn, COM_BINLOG_DUMP, payload)
        elif not self.mariadb and self.use_gtid and gtid_set:
            data = self.gtid_set.encode()
            name = self.file.encode()
            payload = struct.pack("<HII", 0x04, self.server_id, len(name)) + name + struct.pack(
                "<QI", self.pos, len(data)) + data
            await _wire.send_command(conn, COM_BINLOG_DUMP_GTID, payload)
        else:
            payload = struct.pack("<IHI", self.pos, 0, self.server_id) + self.file.encode()
            await _wire.send_command(conn, COM_BINLOG_DUMP, payload)
        self.streaming = True
        self.log.debug("binlog dump started", start=self.start, server_id=self.server_id)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def position(self) -> dict[str, Any]:
        if self.mariadb:
            return {"file": self.file, "pos": self.pos, "gtid": str(self.gtid)}
        return {"file": self.file, "pos": self.pos, "gtid_set": str(self.gtid_set)}

    async def _table_map(self, payload: bytes, body: int, tables: dict[int, Any]) -> None:
        key = payload[body:]
        cached = self._maps.get(key)
        table_id = int.from_bytes(payload[body:body + 6], "little")
        if cached is not None or key in self._maps:
            tables[table_id] = cached
            return
        p = body + 8
        n = payload[p]
        schema = payload[p + 1:p + 1 + n].decode()
        q = p + n + 2
        table = payload[q + 1:q + 1 + payload[q]].decode()
        tm: ev.TableMap | None = None
        if self.table_filter is None or self.table_filter(schema, table):
            tm = ev.TableMap(payload, body)
            if not tm.has_metadata:
                await self._degraded(tm)
        if len(self._maps) > 1000:
            self._maps.clear()
        self._maps[key] = tables[table_id] = tm

    async def _degraded(self, tm: ev.TableMap) -> None:
        if not self._warned_metadata:
            self.log.warning(
                "binlog TABLE_MAP events carry no column names (binlog_row_metadata is not "
                "FULL): names are read from information_schema and reloaded after DDL; "
                "events older than a DDL fail instead of decoding into wrong columns",
                table=f"{tm.schema}.{tm.table}")
            self._warned_metadata = True
        if self.schema_loader is None:
            raise ServiceNotReady("binlog_row_metadata is not FULL and no schema loader was "
                                  "given: SET GLOBAL binlog_row_metadata=FULL")
        key = (tm.schema, tm.table)
        cols = self._columns_cache.get(key)
        if cols is None:
            cols = self._columns_cache[key] = await self.schema_loader(tm.schema, tm.table)
        tm.apply_columns(cols)

    async def items(self) -> AsyncIterator[RowsEvent | Boundary]:
        """Changes and boundaries, in binlog order, until the connection fails or closes."""
        conn = self.conn
        tables: dict[int, Any] = {}
        in_tx = False
        pending: tuple[Any, ...] | None = None
        standalone = False
        checksum = self.checksum
        header = ev.HEADER.unpack_from
        read = _wire.read_packet
        while True:
            packet = await read(conn)
            first = packet[0]
            if first != 0:
                if first == 0xFF:
                    _wire.raise_if_error(packet)
                raise _wire.lost("binlog stream ended (EOF)")
            end = len(packet)
            if checksum:
                end -= 4
                crc = int.from_bytes(packet[end:end + 4], "little")
                if zlib.crc32(memoryview(packet)[1:end]) != crc:
                    raise _wire.lost(f"binlog event checksum mismatch at {self.file}:{self.pos}")
            _ts, etype, server, _size, log_pos, _flags = header(packet, 1)
            body = 20
            if etype in ev.ROW_EVENTS:
                tm = tables.get(int.from_bytes(packet[body:body + 6], "little"))
                if tm is not None:
                    rows, before = ev.decode_rows(tm, etype, packet, body + 8, end)
                    yield RowsEvent(tm, ev.ROW_EVENTS[etype], rows, before)
                continue
            if etype in ev.UNSUPPORTED_ROW_EVENTS:
                if tables.get(int.from_bytes(packet[body:body + 6], "little")) is not None:
                    raise ServiceNotReady(
                        f"binlog event type {etype} (compressed rows or a partial JSON update) "
                        "for a captured table is not supported: set log_bin_compress=OFF "
                        "(MariaDB) or binlog_row_value_options='' (MySQL)")
                continue
            if etype == ev.TABLE_MAP:
                await self._table_map(packet[:end], body, tables)
                continue
            if etype == ev.MARIA_GTID:
                seq, domain, flags2 = struct.unpack_from("<QIB", packet, body)
                pending = (domain, server, seq)
                standalone = bool(flags2 & 1)
                in_tx = not standalone
                continue
            if etype == ev.MYSQL_GTID:
                sid = packet[body + 1:body + 17]
                gno = struct.unpack_from("<q", packet, body + 17)[0]
                pending = (str(uuid.UUID(bytes=sid)), gno)
                continue
            boundary = False
            ddl: str | None = None
            schema: str | None = None
            if etype == ev.XID:
                boundary = True
            elif etype == ev.QUERY:
                schema_len = packet[body + 8]
                status_len = packet[body + 11] | packet[body + 12] << 8
                q = body + 13 + status_len
                schema = packet[q:q + schema_len].decode("utf-8", "replace")
                query = packet[q + schema_len + 1:end].decode("utf-8", "replace")
                upper = query[:8].upper()
                if upper.startswith("BEGIN"):
                    in_tx = True
                elif upper.startswith(("COMMIT", "ROLLBACK")) or not in_tx:
                    boundary = True
                    if not upper.startswith(("COMMIT", "ROLLBACK")):
                        ddl = query
            elif etype == ev.ROTATE:
                self.file = packet[body + 8:end].decode()
                self.pos = struct.unpack_from("<Q", packet, body)[0]
                continue
            elif etype == ev.FORMAT_DESCRIPTION:
                continue
            elif etype in (ev.HEARTBEAT, ev.MYSQL_HEARTBEAT_V2):
                if not in_tx:
                    yield Boundary(self.position(), kind="heartbeat")
                continue
            if boundary:
                if log_pos:
                    self.pos = log_pos
                if pending is not None:
                    if len(pending) == 3:
                        self.gtid.advance(*pending)
                    else:
                        self.gtid_set.add(*pending)
                    pending = None
                in_tx = False
                if ddl is not None:
                    self._columns_cache.clear()
                    self._maps.clear()
                yield Boundary(self.position(), ddl=ddl, schema=schema)
            elif log_pos and not in_tx:
                self.pos = log_pos
