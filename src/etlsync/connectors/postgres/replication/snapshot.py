"""Table reads beside the stream: chunked snapshots (keyset pagination on the primary key)
and the current values of some columns of one row, decoded exactly as the stream decodes
them. A snapshot copies what the publication publishes: its column list and row filter
(PostgreSQL 15+), as PostgreSQL's own initial table copy does; never generated columns.

Types asyncpg decodes exactly as the stream does (:data:`SNAPSHOT_NATIVE`) come through
asyncpg; every other column is read as its type's output text (``format('%s', col)``:
the output function, as pgoutput sends it, where ``col::text`` may use a cast that prints
otherwise, such as ``inet``'s or ``char(n)``'s) in a session with the walsender's output
settings, and decoded by the stream's own decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from etlsync.connectors.postgres.replication.pgoutput import Relation
from etlsync.connectors.postgres.replication.protocol import (
    OUTPUT_SETTINGS,
    qualified,
    quote_ident,
)
from etlsync.connectors.postgres.replication.slots import (
    primary_key,
    published_shape,
    split_table,
    table_columns,
    type_catalog,
)
from etlsync.connectors.postgres.replication.types import (
    BUILTIN,
    SNAPSHOT_NATIVE,
    Catalog,
    _text,
    json_value,
)
from etlsync.core.errors import ConfigError


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Session settings and codecs so asyncpg returns what the stream decoder returns."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", format="text",
                                  encoder=str, decoder=lambda text: json_value(text.encode()))
    for key, value in OUTPUT_SETTINGS.items():
        await conn.execute("SELECT set_config($1, $2, false)", key, value)


def _output_text(col: str) -> str:
    """``col`` as its type's output text, NULL kept (``num_nulls``: a composite of NULLs
    is not NULL)."""
    q = quote_ident(col)
    return f"CASE WHEN num_nulls({q}) = 0 THEN format('%s', {q}) END AS {q}"


class _Columns:
    """How to read some columns of a relation: the select list, and the decoding of the
    columns read as text (which names table, column and value when it fails)."""

    def __init__(self, rel: Relation, columns: Sequence[str], all_text: bool = False) -> None:
        self.rel = rel
        index = {n: i for i, n in enumerate(rel.names)}
        self.text: list[tuple[str, int]] = []
        select = []
        for col in columns:
            i = index[col]
            if rel.columns[i][2] in SNAPSHOT_NATIVE and not all_text:
                select.append(quote_ident(col))
            else:
                select.append(_output_text(col))
                self.text.append((col, i))
        self.select = ", ".join(select)

    def decode(self, records: list[asyncpg.Record]) -> list[dict[str, Any]]:
        rows = [dict(r.items()) for r in records]
        rel = self.rel
        for col, i in self.text:
            dec = rel.decoders[i]
            for row in rows:
                v = row[col]
                if v is not None:
                    raw = v.encode()
                    try:
                        row[col] = dec(raw)
                    except Exception as exc:
                        raise rel.decode_error(i, raw, exc) from exc
        return rows


def _key_params(rel: Relation, key: Sequence[str], first: int = 1) -> list[str]:
    """Parameters for key values as the stream gives them: a value the stream gives as
    text (enums, types without a Python form) is cast from text to the column's type."""
    out = []
    for n, k in enumerate(key, first):
        i = rel.names.index(k)
        out.append(f"(${n}::text)::{rel.schema.columns[i].native}"
                   if rel.decoders[i] is _text and rel.columns[i][2] not in BUILTIN else f"${n}")
    return out


async def _fetch(conn: asyncpg.Connection, cols: _Columns, careful: _Columns, tail: str,
                 *args: Any) -> list[dict[str, Any]]:
    """Rows of ``SELECT <columns> <tail>``; when asyncpg cannot decode a value (a date
    before year 1, say) the rows are read again as text and decoded by the stream's
    decoders, which name table, column and value."""
    try:
        return cols.decode(await conn.fetch(f"SELECT {cols.select} {tail}", *args))
    except (ValueError, OverflowError):
        return careful.decode(await conn.fetch(f"SELECT {careful.select} {tail}", *args))


class TableReader:
    """Reads one table in primary-key order, ``limit`` rows per chunk, as ``publication``
    publishes it (every column and row without one)."""

    def __init__(self, table: str, publication: str | None = None) -> None:
        self.table = table
        self.publication = publication
        self.relation: Relation | None = None
        self.key: tuple[str, ...] = ()
        self._sql = ""
        self._first_sql = ""
        self._cols: _Columns | None = None
        self._careful: _Columns | None = None

    async def prepare(self, conn: asyncpg.Connection, catalog: Catalog) -> Relation:
        """Read the table's columns, key and types; build the chunk queries."""
        schema, name = split_table(self.table)
        relid, cols = await table_columns(conn, self.table)
        key = await primary_key(conn, relid)
        if not key:
            raise ConfigError(f"table {self.table!r} has no primary key: the chunked snapshot "
                              "needs one (or use snapshot='never')")
        published, row_filter = await published_shape(conn, self.publication, self.table)
        if published is not None:
            cols = [c for c in cols if c[0] in published or c[0] in key]
        unknown = [oid for _, oid in cols if oid not in BUILTIN and oid not in catalog]
        if unknown:
            catalog.update(await type_catalog(conn, unknown))
        rel = Relation(relid, schema, name, "d",
                       [(1 if c in key else 0, c, oid, -1) for c, oid in cols])
        rel.build(catalog, key)
        self._cols = _Columns(rel, rel.names)
        self._careful = _Columns(rel, rel.names, all_text=True)
        # the table's own columns: an output column of the same name is text for some types
        order = ", ".join(f"src.{quote_ident(k)}" for k in key)
        params = ", ".join(_key_params(rel, key))
        base = f"FROM {qualified((schema, name))} AS src WHERE {row_filter or 'true'}"
        self._first_sql = f"{base} ORDER BY {order} LIMIT $1"
        self._sql = (f"{base} AND ({order}) > ({params}) ORDER BY {order} "
                     f"LIMIT ${len(key) + 1}")
        self.relation, self.key = rel, key
        return rel

    async def chunk(self, conn: asyncpg.Connection, after: list[Any] | None,
                    limit: int) -> list[dict[str, Any]]:
        """The next ``limit`` rows after key ``after`` (``None``: from the start)."""
        assert self._cols is not None and self._careful is not None
        if after is None:
            return await _fetch(conn, self._cols, self._careful, self._first_sql, limit)
        return await _fetch(conn, self._cols, self._careful, self._sql, *after, limit)

    def last_key(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The key of the last row of a chunk (where the next chunk starts)."""
        last = rows[-1]
        return [last[k] for k in self.key]


async def current_values(conn: asyncpg.Connection, rel: Relation, key: Sequence[Any],
                         columns: Sequence[str]) -> dict[str, Any] | None:
    """The values of ``columns`` of ``rel``'s row whose primary key is ``key`` (values as
    the stream gives them), read now and decoded as the stream decodes them; ``None`` when
    the row is gone."""
    cols = _Columns(rel, columns)
    where = " AND ".join(f"{quote_ident(k)} = {p}" for k, p in
                         zip(rel.primary_key, _key_params(rel, rel.primary_key), strict=True))
    tail = f"FROM {qualified((rel.namespace, rel.name))} WHERE {where}"
    rows = await _fetch(conn, cols, _Columns(rel, columns, all_text=True), tail, *key)
    return rows[0] if rows else None
