"""Schemas: one vocabulary of logical column types that every connector maps to and from."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ColumnType(StrEnum):
    """Logical types. Connectors map their native types onto these and back."""

    INTEGER = "integer"
    FLOAT = "float"
    DECIMAL = "decimal"
    STRING = "string"
    BOOLEAN = "boolean"
    DATE = "date"
    TIME = "time"
    DATETIME = "datetime"
    """A timestamp without time zone."""
    TIMESTAMP = "timestamp"
    """A timestamp with time zone (an instant)."""
    INTERVAL = "interval"
    BYTES = "bytes"
    JSON = "json"
    UUID = "uuid"
    UNKNOWN = "unknown"
    """A type this connector does not know; values stay as text and ``native`` keeps the name."""


def infer_type(value: Any) -> ColumnType:
    """The logical type of a Python value, for targets created from rows without a schema
    (``STRING`` for anything unrecognised; callers skip ``None``)."""
    if isinstance(value, bool):
        return ColumnType.BOOLEAN
    if isinstance(value, int):
        return ColumnType.INTEGER
    if isinstance(value, float):
        return ColumnType.FLOAT
    if isinstance(value, decimal.Decimal):
        return ColumnType.DECIMAL
    if isinstance(value, dt.datetime):
        return ColumnType.TIMESTAMP if value.tzinfo is not None else ColumnType.DATETIME
    if isinstance(value, dt.date):
        return ColumnType.DATE
    if isinstance(value, dt.time):
        return ColumnType.TIME
    if isinstance(value, dt.timedelta):
        return ColumnType.INTERVAL
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ColumnType.BYTES
    if isinstance(value, uuid.UUID):
        return ColumnType.UUID
    if isinstance(value, (dict, list)):
        return ColumnType.JSON
    return ColumnType.STRING


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, logical type, nullability and the source's own type name."""

    name: str
    type: ColumnType = ColumnType.STRING
    nullable: bool = True
    native: str = ""
    """The source's own type name, e.g. ``numeric(12,2)``; informative, may be empty."""


@dataclass(frozen=True, slots=True)
class Schema:
    """The columns of a stream, in order, and its primary key (possibly composite)."""

    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"no column {name!r} in schema (columns: {', '.join(self.names)})")

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)
