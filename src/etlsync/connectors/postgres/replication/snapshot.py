"""Chunked table reads for snapshots: keyset pagination on the primary key, values decoded
exactly as the stream decodes them."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from etlsync.connectors.postgres.replication.pgoutput import Relation
from etlsync.connectors.postgres.replication.protocol import qualified, quote_ident
from etlsync.connectors.postgres.replication.slots import (
    primary_key,
    split_table,
    table_columns,
    type_catalog,
)
from etlsync.connectors.postgres.replication.types import BUILTIN, Decoder
from etlsync.core.errors import ConfigError


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Session settings and codecs so asyncpg returns what the stream decoder returns."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", format="text",
                                  encoder=lambda v: msgspec.json.encode(v).decode(),
                                  decoder=msgspec.json.decode)
    await conn.execute("SET TIME ZONE 'UTC'")


class TableReader:
    """Reads one table in primary-key order, ``limit`` rows per chunk."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.relation: Relation | None = None
        self.key: tuple[str, ...] = ()
        self._sql = ""
        self._first_sql = ""
        self._post: list[tuple[str, Decoder]] = []

    async def prepare(self, conn: asyncpg.Connection, catalog: dict[int, tuple[str, str, int]]
                      ) -> Relation:
        """Read the table's columns, key and types; build the chunk queries."""
        schema, name = split_table(self.table)
        relid, cols = await table_columns(conn, self.table)
        key = await primary_key(conn, relid)
        if not key:
            raise ConfigError(f"table {self.table!r} has no primary key: the chunked snapshot "
                              "needs one (or use snapshot='never')")
        unknown = [oid for _, oid in cols if oid not in BUILTIN and oid not in catalog]
        if unknown:
            catalog.update(await type_catalog(conn, unknown))
        rel = Relation(relid, schema, name, "d",
                       [(1 if c in key else 0, c, oid, -1) for c, oid in cols])
        rel.build(catalog, key)
        select = []
        self._post = []
        for (col, oid), dec in zip(cols, rel.decoders, strict=True):
            native = oid in BUILTIN or catalog.get(oid, ("", "", 0))[1] == "e"
            if native:
                select.append(quote_ident(col))
            else:
                select.append(f"{quote_ident(col)}::text AS {quote_ident(col)}")
                self._post.append((col, dec))
        order = ", ".join(quote_ident(k) for k in key)
        params = ", ".join(f"${i + 1}" for i in range(len(key)))
        base = f"SELECT {', '.join(select)} FROM {qualified((schema, name))}"
        self._first_sql = f"{base} ORDER BY {order} LIMIT $1"
        self._sql = (f"{base} WHERE ({order}) > ({params}) ORDER BY {order} "
                     f"LIMIT ${len(key) + 1}")
        self.relation, self.key = rel, key
        return rel

    async def chunk(self, conn: asyncpg.Connection, after: list[Any] | None,
                    limit: int) -> list[dict[str, Any]]:
        """The next ``limit`` rows after key ``after`` (``None``: from the start)."""
        if after is None:
            records = await conn.fetch(self._first_sql, limit)
        else:
            records = await conn.fetch(self._sql, *after, limit)
        rows = [dict(r.items()) for r in records]
        for col, dec in self._post:
            for row in rows:
                v = row[col]
                if v is not None:
                    row[col] = dec(v.encode())
        return rows

    def last_key(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The key of the last row of a chunk (where the next chunk starts)."""
        last = rows[-1]
        return [last[k] for k in self.key]
