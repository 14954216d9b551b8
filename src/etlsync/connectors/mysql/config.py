"""Connection options shared by the MySQL/MariaDB stages, and type mapping."""

from __future__ import annotations

import os
import ssl as _ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from etlsync.core.errors import ConfigError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.sql.identifiers import quote_identifier


@dataclass(slots=True)
class MysqlOptions:
    """Where and how to connect. The password comes from ``password``, the environment
    variable named by ``password_env``, or the file ``password_file`` (first line), in
    that order; it is never logged.

    :param ssl_ca: CA bundle; setting any ``ssl_*`` option turns TLS on.
    :param ssl_verify: verify the server certificate and host name (default on with TLS).
    """

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str | None = field(default=None, repr=False)
    password_env: str | None = None
    password_file: str | None = None
    database: str | None = None
    ssl: bool = False
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    ssl_verify: bool = True
    connect_timeout: float = 10.0

    @classmethod
    def from_params(cls, params: dict[str, Any] | MysqlOptions | str | None = None,
                    **overrides: Any) -> MysqlOptions:
        """Options from a ``mysql://user@host:port/database`` URI, a dict (``db`` is accepted
        for ``database``) or options, plus keyword overrides."""
        if isinstance(params, MysqlOptions):
            base = {k: getattr(params, k) for k in cls.__dataclass_fields__}
        elif isinstance(params, str):
            base = _from_uri(params)
        else:
            base = dict(params or {})
        if "db" in base:
            base.setdefault("database", base.pop("db"))
        base.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(base) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown MySQL connection option(s): {', '.join(sorted(unknown))}")
        return cls(**base)

    def resolve_password(self) -> str:
        if self.password is not None:
            return self.password
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"environment variable {self.password_env!r} (MySQL password) is not set")
            return value
        if self.password_file:
            try:
                return Path(self.password_file).read_text().splitlines()[0]
            except (OSError, IndexError) as exc:
                raise ConfigError(f"cannot read MySQL password file {self.password_file!r}: {exc}") from exc
        return ""

    def ssl_context(self) -> _ssl.SSLContext | None:
        if not (self.ssl or self.ssl_ca or self.ssl_cert or self.ssl_key):
            return None
        ctx = _ssl.create_default_context(cafile=self.ssl_ca)
        if not self.ssl_verify:
            ctx.check_hostname = False
            ctx.verify_mode = _ssl.CERT_NONE
        if self.ssl_cert:
            ctx.load_cert_chain(self.ssl_cert, self.ssl_key)
        return ctx


def _from_uri(uri: str) -> dict[str, Any]:
    parts = urlsplit(uri)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ConfigError("a MySQL connection URI starts with mysql:// or mariadb://")
    out: dict[str, Any] = {}
    if parts.hostname:
        out["host"] = parts.hostname
    if parts.port:
        out["port"] = parts.port
    if parts.username:
        out["user"] = unquote(parts.username)
    if parts.password:
        out["password"] = unquote(parts.password)
    if parts.path.strip("/"):
        out["database"] = unquote(parts.path.strip("/"))
    for key, value in parse_qsl(parts.query):
        if key not in cls_fields():
            raise ConfigError(f"unknown MySQL connection option {key!r} in the URI")
        out[key] = value.lower() in ("1", "true", "yes") if key in ("ssl", "ssl_verify") \
            else float(value) if key == "connect_timeout" else value
    return out


def cls_fields() -> set[str]:
    return set(MysqlOptions.__dataclass_fields__)


async def connect(options: MysqlOptions, *, database: bool = True, **kw: Any) -> Any:
    """An aiomysql connection in autocommit mode with session time zone UTC."""
    import aiomysql

    conn = await aiomysql.connect(
        host=options.host, port=options.port, user=options.user,
        password=options.resolve_password(),
        db=options.database if database else None,
        ssl=options.ssl_context(), connect_timeout=options.connect_timeout,
        charset="utf8mb4", autocommit=True, init_command="SET time_zone = '+00:00'", **kw,
    )
    return conn


def quote(name: str) -> str:
    """Quote an identifier with backticks (a NUL byte is a ConfigError: the server would cut
    the statement there)."""
    return quote_identifier(name, "`")


def qualified(database: str | None, table: str) -> str:
    return f"{quote(database)}.{quote(table)}" if database else quote(table)


_TYPES: dict[str, ColumnType] = {
    "tinyint": ColumnType.INTEGER, "smallint": ColumnType.INTEGER, "mediumint": ColumnType.INTEGER,
    "int": ColumnType.INTEGER, "bigint": ColumnType.INTEGER, "year": ColumnType.INTEGER,
    "bit": ColumnType.INTEGER, "decimal": ColumnType.DECIMAL, "float": ColumnType.FLOAT,
    "double": ColumnType.FLOAT, "char": ColumnType.STRING, "varchar": ColumnType.STRING,
    "tinytext": ColumnType.STRING, "text": ColumnType.STRING, "mediumtext": ColumnType.STRING,
    "longtext": ColumnType.STRING, "enum": ColumnType.STRING, "set": ColumnType.STRING,
    "binary": ColumnType.BYTES, "varbinary": ColumnType.BYTES, "tinyblob": ColumnType.BYTES,
    "blob": ColumnType.BYTES, "mediumblob": ColumnType.BYTES, "longblob": ColumnType.BYTES,
    "date": ColumnType.DATE, "time": ColumnType.INTERVAL, "datetime": ColumnType.DATETIME,
    "timestamp": ColumnType.TIMESTAMP, "json": ColumnType.JSON, "uuid": ColumnType.UUID,
    "inet4": ColumnType.STRING, "inet6": ColumnType.STRING,
}


def logical_type(data_type: str, column_type: str = "") -> ColumnType:
    """The logical type of an information_schema ``DATA_TYPE``."""
    if data_type == "tinyint" and column_type.startswith("tinyint(1)"):
        return ColumnType.BOOLEAN
    return _TYPES.get(data_type.lower(), ColumnType.UNKNOWN)


_NATIVE: dict[ColumnType, str] = {
    ColumnType.INTEGER: "BIGINT", ColumnType.FLOAT: "DOUBLE", ColumnType.DECIMAL: "DECIMAL(38,9)",
    ColumnType.STRING: "LONGTEXT", ColumnType.BOOLEAN: "BOOLEAN", ColumnType.DATE: "DATE",
    ColumnType.TIME: "TIME(6)", ColumnType.DATETIME: "DATETIME(6)",
    ColumnType.TIMESTAMP: "DATETIME(6)", ColumnType.INTERVAL: "TIME(6)",
    ColumnType.BYTES: "LONGBLOB", ColumnType.JSON: "JSON", ColumnType.UUID: "UUID",
    ColumnType.UNKNOWN: "LONGTEXT",
}


def native_type(column: Column, key: bool = False) -> str:
    """A MariaDB column type for a logical column (keys get indexable types)."""
    if key and column.type in (ColumnType.STRING, ColumnType.UNKNOWN):
        return "VARCHAR(255)"
    if key and column.type == ColumnType.BYTES:
        return "VARBINARY(255)"
    if key and column.type == ColumnType.DECIMAL:
        return "DECIMAL(38,9)"
    return _NATIVE[column.type]


async def column_rows(cur: Any, database: str, table: str, fields: str) -> list[Any]:
    """``fields`` of each column of ``database.table`` (information_schema), in order."""
    await cur.execute(
        f"SELECT {fields} FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND "
        "TABLE_NAME=%s ORDER BY ORDINAL_POSITION", (database, table))
    return list(await cur.fetchall())


async def load_schema(conn: Any, database: str, table: str) -> Schema | None:
    """Columns, types and primary key of ``database.table`` from information_schema."""
    async with conn.cursor() as cur:
        rows = await column_rows(cur, database, table, "COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, "
                                                       "IS_NULLABLE, COLUMN_KEY")
        if not rows:
            return None
        await cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA=%s "
            "AND TABLE_NAME=%s AND CONSTRAINT_NAME='PRIMARY' ORDER BY ORDINAL_POSITION",
            (database, table))
        pk = tuple(r[0] for r in await cur.fetchall())
    cols = tuple(Column(r[0], logical_type(r[1], r[2]), r[3] == "YES", r[2]) for r in rows)
    return Schema(cols, pk)


def stream_name(options: MysqlOptions, database: str, table: str) -> str:
    """The stream of ``database.table``: the bare table name in the configured database."""
    return table if database == options.database else f"{database}.{table}"


async def discover_tables(options: MysqlOptions,
                          tables: Iterable[tuple[str, str]]) -> dict[str, Schema]:
    """The schemas of ``(database, table)`` pairs that exist, by stream name."""
    conn = await connect(options, database=False)
    try:
        out = {}
        for d, t in tables:
            s = await load_schema(conn, d, t)
            if s is not None:
                out[stream_name(options, d, t)] = s
        return out
    finally:
        conn.close()
