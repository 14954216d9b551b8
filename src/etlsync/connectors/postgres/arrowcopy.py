"""COPY of an arrow-form batch: pyarrow's CSV writer renders whole columns in C and the server
parses them (``COPY ... (FORMAT csv)``), with no Python value per field.

Only (arrow type, target type) pairs whose CSV text the server reads back as exactly the value
the record path would store are taken (:func:`copyable`); anything else (other arrow types,
naive timestamps into ``timestamptz``, years 1 and 9999, which asyncpg sends as infinity, ...)
returns ``False`` and the caller COPYs the batch's records as before.
``tests/postgres/test_arrowcopy.py`` loads every pair through both paths and compares.

CSV rules relied on: pyarrow writes a null as an empty unquoted field and quotes an empty
string (and any string holding a quote, a delimiter, a line break or ``\\.``) with ``"``
doubled inside, which is PostgreSQL's CSV format with its default ``NULL ''``, ``QUOTE '"'``
and ``ESCAPE '"'``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from etlsync.connectors.postgres.copytext import INT_TYPES, TEXT_TYPES, base_type
from etlsync.core.schema import ColumnType

_NAIVE = frozenset({"timestamp", "timestamp without time zone"})
_AWARE = frozenset({"timestamptz", "timestamp with time zone"})
_TIMES = frozenset({"time", "time without time zone"})


def _kind(arrow_type: Any) -> str | None:
    """The family of an arrow type that this module can render, else ``None``."""
    import pyarrow as pa

    t = pa.types
    if t.is_integer(arrow_type) and arrow_type != pa.uint64():
        return "int"
    if arrow_type == pa.float64():
        return "float"
    if t.is_string(arrow_type) or t.is_large_string(arrow_type):
        return "str"
    if t.is_boolean(arrow_type):
        return "bool"
    if t.is_decimal(arrow_type):
        return "decimal"
    if t.is_date32(arrow_type):
        return "date"
    if t.is_timestamp(arrow_type) and arrow_type.unit in ("s", "ms", "us"):
        return "naive" if arrow_type.tz is None else ("aware" if arrow_type.tz in (
            "UTC", "utc", "+00:00", "Etc/UTC") else None)
    if t.is_time64(arrow_type) and arrow_type.unit == "us":
        return "time"
    return None


_TARGETS: dict[str, frozenset[str]] = {
    "int": INT_TYPES, "float": frozenset({"double precision", "float8"}), "str": TEXT_TYPES,
    "bool": frozenset({"boolean", "bool"}), "decimal": frozenset({"numeric"}),
    "date": frozenset({"date"}), "naive": _NAIVE, "aware": _AWARE, "time": _TIMES,
}


def copyable(arrow_type: Any, native: str) -> bool:
    """Whether a column of ``arrow_type`` renders exactly into a column of type ``native``."""
    kind = _kind(arrow_type)
    return kind is not None and base_type(native) in _TARGETS[kind]


def _edge_years(column: Any) -> bool:
    """True when a date/timestamp column holds year 1 or 9999 (asyncpg's binary encoding
    sends those extremes as -infinity/infinity; the record path must decide them)."""
    import pyarrow.compute as pc

    if column.null_count == len(column):
        return False
    years = pc.min_max(pc.year(column)).as_py()
    return bool(years["min"] <= 1 or years["max"] >= 9999)


def column_type(arrow_type: Any) -> ColumnType:
    """The logical type of an arrow column (for targets created from an arrow batch)."""
    return {"int": ColumnType.INTEGER, "float": ColumnType.FLOAT, "str": ColumnType.STRING,
            "bool": ColumnType.BOOLEAN, "decimal": ColumnType.DECIMAL,
            "date": ColumnType.DATE, "naive": ColumnType.DATETIME,
            "aware": ColumnType.TIMESTAMP, "time": ColumnType.TIME,
            }.get(_kind(arrow_type) or "", ColumnType.STRING)


def _copy_table(table: Any, pairs: Sequence[tuple[str, str]], natives: Sequence[str]) -> Any:
    """``table``'s source columns of ``pairs`` (a missing one as nulls) as a new table, or
    ``None`` when some column does not render exactly into its target type."""
    import pyarrow as pa

    names = set(table.column_names)
    columns = []
    for (source, _), native in zip(pairs, natives, strict=True):
        if source not in names:
            columns.append(pa.nulls(table.num_rows, pa.string()))
            continue
        column = table.column(source)
        if not copyable(column.type, native):
            return None
        if _kind(column.type) in ("date", "naive", "aware") and _edge_years(column):
            return None
        columns.append(column)
    return pa.table(columns, names=[f"c{i}" for i in range(len(columns))])


def _csv(table: Any) -> memoryview:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    out = pa.BufferOutputStream()
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return memoryview(out.getvalue())  # no copy (bytes would be taken for a path)


def render_csv(table: Any, pairs: Sequence[tuple[str, str]], natives: Sequence[str]
               ) -> memoryview | None:
    """The CSV text of ``table``'s source columns of ``pairs`` (a missing one as nulls), or
    ``None`` when some column does not render exactly into its target type."""
    ready = _copy_table(table, pairs, natives)
    return None if ready is None else _csv(ready)


CHUNK_ROWS = 2_500
"""Rows rendered per COPY data chunk: the server parses one chunk while the next renders."""


async def copy_arrow(conn: asyncpg.Connection, table_name: str, schema: str | None,
                     pairs: Sequence[tuple[str, str]], table: Any, natives: Sequence[str]
                     ) -> bool:
    """COPY the arrow ``table`` (source -> target column ``pairs``, target types
    ``natives``) as CSV, rendered and sent in chunks of :data:`CHUNK_ROWS` rows; ``False``
    (nothing sent) when some column does not render exactly."""
    ready = _copy_table(table, pairs, natives)
    if ready is None:
        return False

    async def chunks() -> AsyncIterator[memoryview]:
        for start in range(0, ready.num_rows, CHUNK_ROWS):
            yield _csv(ready.slice(start, CHUNK_ROWS))

    await conn.copy_to_table(table_name, schema_name=schema, columns=[t for _, t in pairs],
                             source=chunks(), format="csv")
    return True
