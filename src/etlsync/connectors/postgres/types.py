"""PostgreSQL type names to etlsync logical types and back, the ``UNCHANGED`` sentinel, and
schema discovery from the catalog."""

from __future__ import annotations

from typing import Final

import asyncpg

from etlsync.core.schema import Column, ColumnType, Schema


class _Unchanged:
    """The type of :data:`UNCHANGED`."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __reduce__(self) -> str:
        return "UNCHANGED"

    def __bool__(self) -> bool:
        return False


UNCHANGED: Final = _Unchanged()
"""A row value meaning "keep the stored value" (e.g. an unchanged TOASTed column in a CDC
update). :class:`~etlsync.connectors.postgres.sink.PostgresSink` never writes it: on update the
column keeps its value; on insert of a new key it is NULL."""

_TO_LOGICAL: dict[str, ColumnType] = {
    "smallint": ColumnType.INTEGER, "integer": ColumnType.INTEGER, "bigint": ColumnType.INTEGER,
    "int2": ColumnType.INTEGER, "int4": ColumnType.INTEGER, "int8": ColumnType.INTEGER,
    "real": ColumnType.FLOAT, "double precision": ColumnType.FLOAT,
    "float4": ColumnType.FLOAT, "float8": ColumnType.FLOAT,
    "numeric": ColumnType.DECIMAL, "money": ColumnType.DECIMAL,
    "text": ColumnType.STRING, "character varying": ColumnType.STRING,
    "character": ColumnType.STRING, "varchar": ColumnType.STRING, "bpchar": ColumnType.STRING,
    "name": ColumnType.STRING, "citext": ColumnType.STRING,
    "boolean": ColumnType.BOOLEAN, "bool": ColumnType.BOOLEAN,
    "date": ColumnType.DATE,
    "time without time zone": ColumnType.TIME, "time": ColumnType.TIME,
    "timestamp without time zone": ColumnType.DATETIME, "timestamp": ColumnType.DATETIME,
    "timestamp with time zone": ColumnType.TIMESTAMP, "timestamptz": ColumnType.TIMESTAMP,
    "interval": ColumnType.INTERVAL,
    "bytea": ColumnType.BYTES,
    "json": ColumnType.JSON, "jsonb": ColumnType.JSON,
    "uuid": ColumnType.UUID,
}

_TO_PG: dict[ColumnType, str] = {
    ColumnType.INTEGER: "bigint",
    ColumnType.FLOAT: "double precision",
    ColumnType.DECIMAL: "numeric",
    ColumnType.STRING: "text",
    ColumnType.BOOLEAN: "boolean",
    ColumnType.DATE: "date",
    ColumnType.TIME: "time",
    ColumnType.DATETIME: "timestamp",
    ColumnType.TIMESTAMP: "timestamptz",
    ColumnType.INTERVAL: "interval",
    ColumnType.BYTES: "bytea",
    ColumnType.JSON: "jsonb",
    ColumnType.UUID: "uuid",
    ColumnType.UNKNOWN: "text",
}


def logical_type(pg_type: str) -> ColumnType:
    """The logical type of a PostgreSQL type name (``format_type`` output, modifiers ok)."""
    base = pg_type.split("(")[0].strip().lower()
    if base.endswith("[]"):
        return ColumnType.JSON
    return _TO_LOGICAL.get(base, ColumnType.UNKNOWN)


def pg_type_for(column: Column) -> str:
    """The PostgreSQL type to create for ``column``: its native type if it is a PostgreSQL
    one we know, else the default for its logical type."""
    native = column.native.strip()
    if native and logical_type(native) is column.type and column.type is not ColumnType.UNKNOWN:
        return native
    return _TO_PG[column.type]




_COLUMNS_SQL = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable
FROM pg_attribute a
WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_PK_SQL = """
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1::oid AND i.indisprimary
ORDER BY k.ord
"""


async def table_oid(conn: asyncpg.Connection, schema: str, table: str) -> int | None:
    """The table's oid, or ``None`` if it does not exist."""
    oid: int | None = await conn.fetchval(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        schema, table)
    return oid


async def describe_table(conn: asyncpg.Connection, schema: str, table: str) -> Schema | None:
    """The table's columns (name, logical and native type, nullability) and primary key
    (composite keys in key order), or ``None`` if the table does not exist."""
    oid = await table_oid(conn, schema, table)
    if oid is None:
        return None
    cols = await conn.fetch(_COLUMNS_SQL, oid)
    pk = await conn.fetch(_PK_SQL, oid)
    return Schema(
        columns=tuple(Column(r["name"], logical_type(r["type"]), bool(r["nullable"]), r["type"])
                      for r in cols),
        primary_key=tuple(r["attname"] for r in pk),
    )


async def describe_query(conn: asyncpg.Connection, query: str,
                         primary_key: tuple[str, ...] = ()) -> Schema:
    """The result columns of ``query`` (prepared, not run)."""
    stmt = await conn.prepare(query)
    cols = []
    for attr in stmt.get_attributes():
        native = await conn.fetchval("SELECT format_type($1::oid, NULL)", attr.type.oid)
        cols.append(Column(attr.name, logical_type(native), True, native))
    return Schema(columns=tuple(cols), primary_key=primary_key)
