"""Types from a live server: the statement is prepared (PostgreSQL through asyncpg, MariaDB
and MySQL with ``COM_STMT_PREPARE`` on an aiomysql connection), which checks it and reports
parameter and result types; the catalog of the tables it reads gives nullability."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from etlsync.codegen import sqltypes
from etlsync.codegen.infer import ColumnInfo, Schema
from etlsync.codegen.model import CodegenError, Query, SqlType
from etlsync.connectors.mysql.events import lenenc as _lenenc


class PreparedColumn(NamedTuple):
    """A result column as the server reports it; ``nullable`` is ``None`` when it does not say
    (PostgreSQL); ``table``/``column``: where it comes from, when the server says (MariaDB)."""

    name: str
    type: SqlType
    nullable: bool | None
    table: str = ""
    column: str = ""


@dataclass(slots=True)
class Prepared:
    """What the server said about one statement (a parameter type is ``None`` when it does not
    say: MariaDB reports every parameter as a string)."""

    params: Sequence[SqlType | None]
    columns: list[PreparedColumn]
    schema: Schema = field(default_factory=dict)


def dialect_of_url(url: str) -> str:
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme in ("postgres", "postgresql"):
        return "postgres"
    if scheme in ("mysql", "mariadb"):
        return "mysql"
    raise CodegenError(f"database URL: scheme {scheme!r}: expected postgresql:// or mysql://")


class LiveDatabase:
    """One connection used to prepare every query of a file (never executes them)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = dialect_of_url(url)
        self._conn: Any = None

    async def __aenter__(self) -> LiveDatabase:
        try:
            if self.dialect == "postgres":
                import asyncpg

                self._conn = await asyncpg.connect(self.url, timeout=10)
            else:
                from etlsync.connectors.mysql.config import MysqlOptions, connect

                parts = urlsplit(self.url)
                opts = MysqlOptions(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                                    user=unquote(parts.username or "root"),
                                    password=unquote(parts.password) if parts.password else None,
                                    database=parts.path.lstrip("/") or None)
                self._conn = await connect(opts)
        except ImportError as exc:
            extra = "postgres" if self.dialect == "postgres" else "mysql"
            raise CodegenError(f"database URL: the driver is not installed ({exc.name}); "
                               f"pip install 'etlsync[{extra}]'") from None
        except (OSError, Exception) as exc:  # noqa: BLE001 - one line naming the server
            where = urlsplit(self.url).hostname
            raise CodegenError(f"database {where}: cannot connect: {type(exc).__name__}: "
                               f"{_no_secrets(str(exc), self.url)}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            if self.dialect == "postgres":
                await self._conn.close()
            else:
                self._conn.close()

    async def prepare(self, q: Query, sql: str, tables: set[str],
                      offset_of: Callable[[int], int] | None = None) -> Prepared:
        """Prepare ``sql`` (the driver's placeholders); ``offset_of`` maps an offset in
        ``sql`` to one in the query's canonical text, for the server's error position."""
        if self.dialect == "postgres":
            return await self._prepare_pg(q, sql, tables, offset_of)
        return await self._prepare_mysql(q, sql, tables)

    # -- PostgreSQL --------------------------------------------------------------------------
    async def _prepare_pg(self, q: Query, sql: str, tables: set[str],
                          offset_of: Callable[[int], int] | None) -> Prepared:
        import asyncpg

        try:
            stmt = await self._conn.prepare(sql)
        except asyncpg.PostgresError as exc:
            pos = getattr(exc, "position", None)
            offset = offset_of(int(pos) - 1) if pos and offset_of is not None else None
            raise q.error(f"the server rejected it: {exc.sqlstate}: {exc}", offset) from None
        params = [_pg_type(t) for t in stmt.get_parameters()]
        columns = [PreparedColumn(str(a.name), _pg_type(a.type), None)
                   for a in stmt.get_attributes()]
        schema = await self._pg_schema(tables)
        return Prepared(params, columns, schema)

    async def _pg_schema(self, tables: set[str]) -> Schema:
        rows = await self._conn.fetch(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, "
            "a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE lower(c.relname) = ANY($1::text[]) AND pg_table_is_visible(c.oid) "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
            sorted(tables))
        schema: Schema = {}
        for r in rows:
            schema.setdefault(r["relname"].lower(), {})[r["attname"]] = ColumnInfo(
                r["type"], sqltypes.from_name(r["type"]), not r["attnotnull"])
        return schema

    # -- MariaDB / MySQL ---------------------------------------------------------------------
    async def _prepare_mysql(self, q: Query, sql: str, tables: set[str]) -> Prepared:
        from etlsync.connectors.mysql import _wire

        conn = self._conn
        await _wire.send_command(conn, 0x16, sql.encode("utf-8"))  # COM_STMT_PREPARE
        first = await _wire.read_packet(conn)
        if first[:1] == b"\xff":
            errno = struct.unpack_from("<H", first, 1)[0]
            text = first[3:]
            text = text[6:] if text[:1] == b"#" else text
            raise q.error(f"the server rejected it: {errno}: {text.decode('utf-8', 'replace')}")
        stmt_id, n_cols, n_params = struct.unpack_from("<IHH", first, 1)
        eof = not (conn.client_flag & (1 << 24))  # no CLIENT_DEPRECATE_EOF: EOF after each list
        param_defs = [await _wire.read_packet(conn) for _ in range(n_params)]
        if n_params and eof:
            await _wire.read_packet(conn)
        col_defs = [_column_def(await _wire.read_packet(conn)) for _ in range(n_cols)]
        if n_cols and eof:
            await _wire.read_packet(conn)
        await _wire.send_command(conn, 0x19, struct.pack("<I", stmt_id))  # COM_STMT_CLOSE
        del param_defs  # MariaDB reports every parameter as a string: types come from use
        schema = await self._mysql_schema(tables)
        columns: list[PreparedColumn] = []
        for d in col_defs:
            origin = schema.get(d.org_table.lower(), {}).get(d.org_name)
            typ = _mysql_type(d)
            if origin is not None and origin.type.logical in ("json", "uuid", "bool"):
                typ = origin.type
            columns.append(PreparedColumn(d.name, typ, not d.flags & 1, d.org_table, d.org_name))
        return Prepared([None] * n_params, columns, schema)

    async def _mysql_schema(self, tables: set[str]) -> Schema:
        if not tables:
            return {}
        marks = ", ".join(["%s"] * len(tables))
        async with self._conn.cursor() as cur:
            await cur.execute(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, DATA_TYPE FROM "
                "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND "
                f"LOWER(TABLE_NAME) IN ({marks}) ORDER BY TABLE_NAME, ORDINAL_POSITION",
                sorted(tables))
            rows = await cur.fetchall()
            await cur.execute(
                "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = DATABASE()")
            checks = await cur.fetchall()
        json_cols = {(t.lower(), m[1]) for t, clause in checks
                     for m in [re.match(r"json_valid\(`?([^`)]+)`?\)", clause or "")] if m}
        schema: Schema = {}
        for table, column, ctype, is_nullable, data_type in rows:
            typ = SqlType("json", "json") if (table.lower(), column) in json_cols else \
                sqltypes.from_name(ctype)
            if data_type == "uuid":
                typ = SqlType("uuid", "uuid")
            schema.setdefault(table.lower(), {})[column] = ColumnInfo(ctype, typ, is_nullable == "YES")
        return schema


def _pg_type(t: Any) -> SqlType:
    if t.kind == "enum":
        return SqlType("text", t.name)
    if t.kind == "array":
        return SqlType("unknown", f"{t.name}")
    return sqltypes.from_name(t.name)


_MYSQL_CODES = {1: "tinyint", 2: "smallint", 3: "int", 4: "float", 5: "double", 7: "timestamp",
                8: "bigint", 9: "mediumint", 10: "date", 11: "time", 12: "datetime", 13: "year",
                15: "varchar", 16: "bit", 245: "json", 246: "decimal", 247: "enum", 248: "set",
                249: "tinyblob", 250: "mediumblob", 251: "longblob", 252: "blob",
                253: "varchar", 254: "char"}


class ColumnDefinition(NamedTuple):
    """A MySQL protocol column definition (the fields we use)."""

    table: str
    org_table: str
    name: str
    org_name: str
    charset: int
    length: int
    type: int
    flags: int


def _mysql_type(d: ColumnDefinition) -> SqlType:
    name = _MYSQL_CODES.get(d.type, f"type {d.type}")
    binary = d.charset == 63
    if d.type in (15, 249, 250, 251, 252, 253, 254):
        name = ("varbinary" if d.type in (15, 253, 254) else "blob") if binary else \
            ("text" if d.type >= 249 else "varchar")
    if d.type == 1 and d.length == 1:
        return SqlType("bool", "tinyint(1)")
    return sqltypes.from_name(name, unsigned=bool(d.flags & 32))


def _column_def(packet: bytes) -> ColumnDefinition:
    pos = 0
    texts = []
    for _ in range(6):  # catalog, schema, table, org_table, name, org_name
        n, pos = _lenenc(packet, pos)
        texts.append(packet[pos:pos + n].decode("utf-8", "replace"))
        pos += n
    _, pos = _lenenc(packet, pos)  # length of the fixed fields (0x0c)
    charset, length, typ, flags = struct.unpack_from("<HIBH", packet, pos)
    return ColumnDefinition(texts[2], texts[3], texts[4], texts[5], charset, length, typ, flags)


def _no_secrets(text: str, url: str) -> str:
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text
