"""The explicit mapping of Python values and logical types to SQLite and back.

| Python value | stored as | declared column type |
|---|---|---|
| ``int`` / ``float`` / ``str`` / ``bytes`` / ``None`` | itself | INTEGER / REAL / TEXT / BLOB |
| ``bool`` | 0 or 1 | BOOLEAN |
| ``Decimal`` | its exact text, e.g. ``'12.50'`` | DECIMAL_TEXT (TEXT affinity: no rounding) |
| ``datetime`` | ISO 8601 text (``2024-05-01 10:00:00[+02:00]``) | DATETIME / TIMESTAMP (aware) |
| ``date`` / ``time`` | ISO 8601 text | DATE / TIME |
| ``timedelta`` | seconds as REAL | INTERVAL |
| ``uuid.UUID`` | canonical text | UUID |
| ``dict`` / ``list`` / ``tuple`` | compact JSON text | JSON |

:class:`~etlsync.connectors.sqlite.SqliteSource` maps the declared types back (DECIMAL_TEXT to
``Decimal``, DATE to ``date``, ...) for the columns of a table.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from etlsync.core.errors import DataError
from etlsync.core.schema import ColumnType

NATIVE: frozenset[type] = frozenset({int, float, str, bytes, type(None), bool})
"""Types sqlite3 binds without conversion (``bool`` binds as 0/1)."""

_json = msgspec.json.Encoder(decimal_format="string")


def _json_text(v: Any) -> str:
    return _json.encode(v).decode()


ADAPTERS: dict[type, Callable[[Any], Any]] = {
    Decimal: str,
    dt.datetime: lambda v: v.isoformat(sep=" "),
    dt.date: lambda v: v.isoformat(),
    dt.time: lambda v: v.isoformat(),
    dt.timedelta: lambda v: v.total_seconds(),
    uuid.UUID: str,
    dict: _json_text,
    list: _json_text,
    tuple: _json_text,
    bytearray: bytes,
    memoryview: bytes,
}


def adapt(value: Any) -> Any:
    """``value`` as SQLite stores it (see the module table)."""
    t = type(value)
    if t in NATIVE:
        return value
    fn = ADAPTERS.get(t)
    if fn is None:
        for base, f in ADAPTERS.items():
            if isinstance(value, base):
                fn = f
                break
        else:
            raise DataError(f"cannot store a {t.__name__} in SQLite: {value!r}", value=value)
    return fn(value)


DECLARED: dict[ColumnType, str] = {
    ColumnType.INTEGER: "INTEGER", ColumnType.FLOAT: "REAL", ColumnType.DECIMAL: "DECIMAL_TEXT",
    ColumnType.STRING: "TEXT", ColumnType.BOOLEAN: "BOOLEAN", ColumnType.DATE: "DATE",
    ColumnType.TIME: "TIME", ColumnType.DATETIME: "DATETIME", ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.INTERVAL: "INTERVAL", ColumnType.BYTES: "BLOB", ColumnType.JSON: "JSON",
    ColumnType.UUID: "UUID", ColumnType.UNKNOWN: "",
}
"""The declared SQLite type of each logical type (the inverse of :func:`logical_type`)."""

_BY_PYTHON: dict[type, ColumnType] = {
    bool: ColumnType.BOOLEAN, int: ColumnType.INTEGER, float: ColumnType.FLOAT,
    str: ColumnType.STRING, bytes: ColumnType.BYTES, bytearray: ColumnType.BYTES,
    Decimal: ColumnType.DECIMAL, dt.date: ColumnType.DATE, dt.time: ColumnType.TIME,
    dt.timedelta: ColumnType.INTERVAL, uuid.UUID: ColumnType.UUID, dict: ColumnType.JSON,
    list: ColumnType.JSON, tuple: ColumnType.JSON,
}


def type_of_value(value: Any) -> ColumnType:
    """The logical type of a Python value (``UNKNOWN`` for ``None``)."""
    if isinstance(value, dt.datetime):
        return ColumnType.TIMESTAMP if value.tzinfo is not None else ColumnType.DATETIME
    return _BY_PYTHON.get(type(value), ColumnType.UNKNOWN)


def logical_type(declared: str) -> ColumnType:
    """The logical type of a declared SQLite column type (affinity rules for the rest)."""
    d = declared.strip().upper()
    for ct, name in DECLARED.items():
        if name and d == name:
            return ct
    if d.startswith(("DECIMAL", "NUMERIC")):
        return ColumnType.DECIMAL
    if "INT" in d:
        return ColumnType.INTEGER
    if any(s in d for s in ("CHAR", "CLOB", "TEXT")):
        return ColumnType.STRING
    if any(s in d for s in ("REAL", "FLOA", "DOUB")):
        return ColumnType.FLOAT
    if "BLOB" in d:
        return ColumnType.BYTES
    if d.startswith("BOOL"):
        return ColumnType.BOOLEAN
    return ColumnType.UNKNOWN


def _date(v: Any) -> Any:
    return dt.date.fromisoformat(v) if isinstance(v, str) else v


def _datetime(v: Any) -> Any:
    return dt.datetime.fromisoformat(v) if isinstance(v, str) else v


def _time(v: Any) -> Any:
    return dt.time.fromisoformat(v) if isinstance(v, str) else v


def _decimal(v: Any) -> Any:
    return Decimal(v) if isinstance(v, str) else (Decimal(str(v)) if v is not None else None)


def _bool(v: Any) -> Any:
    return bool(v) if isinstance(v, int) else v


def _json_value(v: Any) -> Any:
    return msgspec.json.decode(v) if isinstance(v, (str, bytes)) else v


def _uuid(v: Any) -> Any:
    return uuid.UUID(v) if isinstance(v, str) else v


def _interval(v: Any) -> Any:
    return dt.timedelta(seconds=v) if isinstance(v, (int, float)) else v


READERS: dict[ColumnType, Callable[[Any], Any]] = {
    ColumnType.DECIMAL: _decimal, ColumnType.DATE: _date, ColumnType.DATETIME: _datetime,
    ColumnType.TIMESTAMP: _datetime, ColumnType.TIME: _time, ColumnType.BOOLEAN: _bool,
    ColumnType.JSON: _json_value, ColumnType.UUID: _uuid, ColumnType.INTERVAL: _interval,
}
"""Converters from stored values back to Python, by logical type (absent: unchanged)."""
