"""SQL type names (PostgreSQL, MySQL/MariaDB, sqlglot's) to the logical types the language
generators map."""

from __future__ import annotations

from sqlglot import exp

from etlsync.codegen.model import UNKNOWN, SqlType

_NAMES: dict[str, str] = {
    # PostgreSQL (format_type and pg_type names) and the SQL standard
    "smallint": "int16", "int2": "int16", "smallserial": "int16",
    "integer": "int32", "int": "int32", "int4": "int32", "serial": "int32",
    "bigint": "int64", "int8": "int64", "bigserial": "int64",
    "real": "float32", "float4": "float32",
    "double precision": "float64", "float8": "float64", "double": "float64", "float": "float64",
    "numeric": "decimal", "decimal": "decimal", "money": "decimal",
    "text": "text", "character varying": "text", "varchar": "text", "character": "text",
    "char": "text", "bpchar": "text", "name": "text", "citext": "text",
    "boolean": "bool", "bool": "bool",
    "date": "date",
    "time": "time", "time without time zone": "time",
    "timestamp": "timestamp", "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz", "timestamp with time zone": "timestamptz",
    "bytea": "bytes", "json": "json", "jsonb": "json", "uuid": "uuid",
    # MySQL / MariaDB (information_schema DATA_TYPE)
    "tinyint": "int16", "mediumint": "int32", "year": "int16",
    "datetime": "timestamp",
    "tinytext": "text", "mediumtext": "text", "longtext": "text", "enum": "text", "set": "text",
    "binary": "bytes", "varbinary": "bytes", "blob": "bytes", "tinyblob": "bytes",
    "mediumblob": "bytes", "longblob": "bytes", "bit": "int64",
    # sqlglot DataType.Type names
    "int128": "decimal", "uint": "int64", "ubigint": "decimal", "usmallint": "int32",
    "utinyint": "int16", "umediumint": "int32", "bigdecimal": "decimal",
    "nvarchar": "text", "nchar": "text", "timestampltz": "timestamptz", "timestamp_s": "timestamp",
    "timestamp_ms": "timestamp", "timestamp_ns": "timestamp", "datetime64": "timestamp",
    "varbinary_max": "bytes", "image": "bytes", "unknown": "unknown", "null": "unknown",
}


def from_name(name: str, unsigned: bool = False) -> SqlType:
    """The logical type of a type name such as ``numeric(10,2)``, ``int8`` or ``bigint unsigned``."""
    text = " ".join(name.strip().lower().split())
    if text.endswith("[]"):
        return SqlType("unknown", text)
    if " unsigned" in text:
        unsigned, text = True, text.replace(" unsigned", "")
    base = text.split("(")[0].strip()
    if base == "tinyint" and text.startswith("tinyint(1)") and not unsigned:
        return SqlType("bool", name)
    logical = _NAMES.get(base, "unknown")
    if unsigned and logical in ("int16", "int32", "int64"):
        logical = {"int16": "int32", "int32": "int64", "int64": "decimal"}[logical]
    return SqlType(logical, name)


def from_datatype(dt: exp.DataType | None, dialect: str) -> SqlType:
    """The logical type sqlglot annotated (``UNKNOWN`` when it could not tell)."""
    if dt is None or dt.this == exp.DType.UNKNOWN:
        return UNKNOWN
    if dt.this in (exp.DType.NULL,):
        return UNKNOWN
    sql = dt.sql(dialect=dialect)
    if dt.this == exp.DType.TINYINT and dialect == "mysql":
        return from_name(sql)
    typ = from_name(sql)
    if typ.logical == "unknown":
        typ = from_name(dt.this.value.lower())
        return SqlType(typ.logical, sql)
    return typ
