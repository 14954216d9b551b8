"""An asyncio binlog client: registers as a replica, dumps from a GTID position or from
file + position, verifies and strips checksums, and yields decoded changes and
transaction boundaries.

The stream is a sequence of :class:`RowsEvent`, :class:`Truncate` and :class:`Boundary`
items. A boundary carries the position *after* a committed transaction (or after a
heartbeat while idle); resuming from it never re-reads or skips a transaction. A data
change to a captured table that the server logged as a statement (a session with
``binlog_format`` STATEMENT or MIXED) stops the stream with :class:`ServiceNotReady`: its
rows are not in the binlog.
"""

from __future__ import annotations

import random
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from etlsync.connectors.mysql import _wire, statements
from etlsync.connectors.mysql import events as ev
from etlsync.connectors.mysql.charsets import Charsets
from etlsync.connectors.mysql.config import (
    MysqlOptions,
    column_rows,
    connect,
    qualified,
    quote,
)
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
class Truncate:
    """``TRUNCATE`` of a captured table (its own transaction: a boundary follows)."""

    schema: str
    table: str


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
    :param schema_loader: async ``(schema, table) -> list[ColumnInfo]``: the table's
        columns now, for degraded mode (TABLE_MAP events without column names) and for
        the data types of BINARY(16)/(4) columns (UUID, INET6, INET4); default
        :func:`load_columns` on these options.
    :param heartbeat: seconds between server heartbeats while idle.
    """

    def __init__(self, options: MysqlOptions, start: dict[str, Any] | None = None, *,
                 table_filter: TableFilter | None = None, schema_loader: Any = None,
                 heartbeat: float = 1.0, server_id: int | None = None,
                 use_gtid: bool = True) -> None:
        self.options = options
        self.start = dict(start) if start else None
        self.table_filter = table_filter
        self.schema_loader = schema_loader or self._load_columns
        self.heartbeat = heartbeat
        self.server_id = server_id or random.randint(0x40000000, 0x7FFFFFFF)
        self.use_gtid = use_gtid
        self.conn: Any = None
        self.thread_id: int | None = None
        self.streaming = False
        self.mariadb = True
        self.log = get_logger(component="mysql-binlog")
        self.charsets = Charsets.for_server((options.host, options.port))
        self.row_metadata = "FULL"
        self.fold_case = False
        """``lower_case_table_names`` is on: statements' table names compare lower case."""
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
            return {"file": file, "pos": pos, "gtid": await self.gtid_at(cur, file, pos)}
        gtid_set = status_row[4] if len(status_row) > 4 else ""
        return {"file": file, "pos": pos, "gtid_set": (gtid_set or "").replace("\n", "")}

    async def position_at(self, file: str, pos: int) -> dict[str, Any]:
        """The MariaDB position at ``file``:``pos`` (a transaction boundary), GTID included."""
        conn = await connect(self.options, database=False)
        try:
            async with conn.cursor() as cur:
                return {"file": file, "pos": pos, "gtid": await self.gtid_at(cur, file, pos)}
        finally:
            conn.close()

    async def gtid_at(self, cur: Any, file: str, pos: int) -> str:
        """The MariaDB GTID position at ``file``:``pos``: ``BINLOG_GTID_POS()``, or, where
        the server returns NULL (an event larger than ``max_allowed_packet`` earlier in
        the file), the file's GTID list advanced by its GTIDs up to ``pos``, read here."""
        await cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        gtid = (await cur.fetchone())[0]
        if gtid is not None:
            return str(gtid)
        self.log.warning("BINLOG_GTID_POS() is NULL for this position (an event larger than "
                         "max_allowed_packet is in the file): reading the GTID position from "
                         "the binlog file itself", file=file, pos=pos)
        return await self._scan_gtid(file, pos)

    async def _scan_gtid(self, file: str, pos: int) -> str:
        scan = BinlogStream(self.options, {"file": file, "pos": 4}, use_gtid=False,
                            table_filter=lambda d, t: False, heartbeat=self.heartbeat)
        await scan.connect()
        state = MariaGtidPos()
        try:
            while True:
                packet = await _wire.read_packet(scan.conn)
                if packet[0] != 0:
                    _wire.raise_if_error(packet)
                    raise _wire.lost("binlog stream ended while reading a GTID position")
                _ts, etype, server, _size, log_pos, _flags = ev.HEADER.unpack_from(packet, 1)
                if etype == ev.MARIA_GTID_LIST:
                    count = int.from_bytes(packet[20:24], "little") & 0x0FFFFFFF
                    for k in range(count):
                        domain, origin, seq = struct.unpack_from("<IIQ", packet, 24 + 16 * k)
                        state.advance(domain, origin, seq)
                elif etype == ev.MARIA_GTID and log_pos <= pos:
                    seq, domain = struct.unpack_from("<QI", packet, 20)
                    state.advance(domain, server, seq)
                if etype == ev.HEARTBEAT or log_pos >= pos or (
                        etype == ev.ROTATE and log_pos and scan.file not in ("", file)):
                    return str(state)
                if etype == ev.ROTATE:
                    scan.file = packet[28:len(packet) - (4 if scan.checksum else 0)].decode()
        finally:
            scan.close()

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
            await self._check_metadata(cur)
            await self.charsets.load_collations(cur)
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

    async def _check_metadata(self, cur: Any) -> None:
        """Read ``binlog_row_metadata`` and ``lower_case_table_names``; say at once what a
        server without FULL row metadata means."""
        try:
            await cur.execute("SELECT @@global.binlog_row_metadata")
            self.row_metadata = str((await cur.fetchone())[0]).upper()
        except Exception:  # noqa: BLE001 - servers before MariaDB 10.5 / MySQL 8.0.1
            self.row_metadata = "NONE"
        await cur.execute("SELECT @@lower_case_table_names")
        self.fold_case = int((await cur.fetchone())[0] or 0) != 0
        if self.row_metadata != "FULL":
            self.log.warning(
                "binlog_row_metadata is not FULL: TABLE_MAP events carry no column names, so "
                "names, charsets and ENUM members are read from the table as it is now and "
                "reloaded after DDL; events older than a DDL fail instead of decoding into "
                "wrong columns. Fix: SET GLOBAL binlog_row_metadata=FULL",
                binlog_row_metadata=self.row_metadata)

    async def _load_columns(self, schema: str, table: str) -> list[ev.ColumnInfo]:
        return await load_columns(self.options, schema, table)

    async def _columns(self, schema: str, table: str) -> Any:
        key = (schema, table)
        cols = self._columns_cache.get(key)
        if cols is None:
            cols = self._columns_cache[key] = await self.schema_loader(schema, table)
        return cols

    async def _ensure_charsets(self, charsets: list[str | None]) -> None:
        """Load the server's tables of the character sets a table map needs (once)."""
        missing = self.charsets.missing(charsets)
        if not missing:
            return
        conn = await connect(self.options, database=False)
        try:
            async with conn.cursor() as cur:
                await self.charsets.load(cur, missing)
        finally:
            conn.close()

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
            tm = ev.TableMap(payload, body, charsets=self.charsets, build=False)
            if not tm.has_metadata:
                await self._degraded(tm)
            else:
                await self._ensure_charsets(tm.needed_charsets())
                if tm.fixed_text_candidates():
                    cols = await self._columns(tm.schema, tm.table)
                    tm.set_data_types({c.name: c.data_type for c in cols})
                tm.build()
        if len(self._maps) > 1000:
            self._maps.clear()
        self._maps[key] = tables[table_id] = tm

    async def _degraded(self, tm: ev.TableMap) -> None:
        """No row metadata: names, charsets and members from the table as it is now."""
        cols = await self._columns(tm.schema, tm.table)
        await self._ensure_charsets([*tm.needed_charsets(), *(c.charset for c in cols)])
        tm.apply_columns(cols)

    def _captured(self, schema: str, table: str) -> bool:
        if self.table_filter is None:
            return True
        if self.table_filter(schema, table):
            return True
        return self.fold_case and self.table_filter(schema.lower(), table.lower())

    def _statement(self, schema: str, query: str, log_pos: int) -> Truncate | None:
        """A statement that changes rows of captured tables: TRUNCATE becomes a change;
        any other data change stops the stream (its rows are not in the binlog)."""
        word = statements.first_word(query)
        if word not in statements.DML and word not in ("TRUNCATE", "WITH", "ALTER"):
            return None
        kind, tables = statements.classify(query, schema)
        hit = sorted(t for t in tables if self._captured(*t))
        if not hit or kind == "other":
            return None
        if kind == "truncate":
            return Truncate(*hit[0])
        names = ", ".join(f"{d}.{t}" for d, t in hit)
        raise ServiceNotReady(
            f"binlog {self.file}:{log_pos}: a change to captured table(s) {names} was logged "
            f"as a statement, not as rows, so its rows cannot be read: {query[:300]!r}. A "
            "session with binlog_format=STATEMENT or MIXED wrote it. Prevent it: keep "
            "binlog_format=ROW for every session (SET GLOBAL binlog_format=ROW, and no "
            "SET SESSION binlog_format in applications). Recover: take a new snapshot of "
            "the table(s) (clear this pipeline's checkpoint and run with snapshot=True)")

    async def items(self) -> AsyncIterator[RowsEvent | Truncate | Boundary]:
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
                else:
                    change = self._statement(schema, query, log_pos)
                    if change is not None:
                        yield change
                if upper.startswith(("COMMIT", "ROLLBACK")) or not in_tx:
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


async def load_columns(options: MysqlOptions, schema: str, table: str) -> list[ev.ColumnInfo]:
    """The columns of ``schema.table`` as they are now (information_schema): names, data
    types, signedness, character sets, primary key, and ENUM/SET members as the server
    gives them (read back from a temporary table of those columns: information_schema
    holds members in utf8mb3, which turns characters beyond it into ``?``)."""
    conn = await connect(options, database=False)
    try:
        async with conn.cursor() as cur:
            rows = await column_rows(cur, schema, table, "COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, "
                                                         "CHARACTER_SET_NAME, COLUMN_KEY")
            declared = {r[0]: (r[1], _split_quoted(r[2][r[2].index("(") + 1:r[2].rindex(")")]))
                        for r in rows if r[1] in ("enum", "set")}
            members = await _members(cur, schema, table, declared)
    finally:
        conn.close()
    return [ev.ColumnInfo(name, data_type, "unsigned" in column_type, charset,
                          members.get(name, []), key == "PRI")
            for name, data_type, column_type, charset, key in rows]


async def _members(cur: Any, schema: str, table: str,
                   declared: dict[str, tuple[str, list[str]]]) -> dict[str, list[str]]:
    """ENUM and SET members by column (``declared``: data type and quoted members): the
    server's own text of each member, by its number, else the declaration."""
    out = {c: [s[1:-1].replace("''", "'") for s in items] for c, (_, items) in declared.items()}
    if not declared:
        return out
    tmp = qualified(schema, f"etlsync_members_{uuid.uuid4().hex[:12]}")
    cols = list(declared)
    most = max(len(items) for _, items in declared.values())
    try:
        await cur.execute("SET SESSION sql_mode = ''")
        await cur.execute(f"CREATE TEMPORARY TABLE {tmp} (etlsync_n int NOT NULL DEFAULT 0 "
                          "PRIMARY KEY) SELECT "
                          + ", ".join(quote(c) for c in cols)
                          + f" FROM {qualified(schema, table)} LIMIT 0")
        rows = []
        for n in range(most):  # member n + 1 of an ENUM, bit n of a SET
            values = [("NULL" if n >= len(declared[c][1]) else
                       str(n + 1) if declared[c][0] == "enum" else str(1 << n)) for c in cols]
            rows.append(f"({n}, {', '.join(values)})")
        await cur.execute(f"INSERT INTO {tmp} VALUES " + ", ".join(rows))
        await cur.execute(f"SELECT {', '.join(quote(c) for c in cols)} FROM {tmp} "
                          "ORDER BY etlsync_n")
        got = await cur.fetchall()
        await cur.execute(f"DROP TEMPORARY TABLE {tmp}")
    except Exception as exc:  # noqa: BLE001 - no CREATE TEMPORARY TABLES privilege, ...
        get_logger(component="mysql-binlog").warning(
            "cannot read ENUM/SET members back from the server: using information_schema's "
            "(members beyond utf8mb3 read as '?')", table=f"{schema}.{table}", error=str(exc))
        return out
    for k, c in enumerate(cols):
        out[c] = [row[k] for row in got[:len(declared[c][1])]]
    return out


def _split_quoted(text: str) -> list[str]:
    """The quoted members of an ENUM/SET declaration (``'a','b''c'``), quotes kept."""
    out, cur, quoted, i = [], "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == "'" and quoted and i + 1 < len(text) and text[i + 1] == "'":
            cur += "''"
            i += 2
            continue
        if ch == "'":
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    out.append(cur)
    return out
