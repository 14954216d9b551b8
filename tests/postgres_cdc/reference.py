"""The server's own values, read independently of etlsync: asyncpg's decoding (binary for
the types etlsync decodes natively) and each type's output text for the types etlsync
delivers as text (asyncpg text codecs, or ``::text`` where asyncpg allows no text codec),
in a session with the walsender's settings. Used to check every CDC value."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import asyncpg

SESSION = ("SET DateStyle = ISO; SET TimeZone = UTC; SET IntervalStyle = iso_8601; "
           "SET extra_float_digits = 3")

TEXT_TYPES = ("inet", "cidr", "macaddr", "macaddr8", "point", "line", "lseg", "box", "path",
              "polygon", "circle", "money", "xml", "tsvector", "tsquery", "bit", "varbit",
              "pg_lsn", "txid_snapshot", "regclass", "regtype")
"""Types etlsync delivers as their output text (logical type unknown)."""


def exact_number(text: str) -> float | Decimal:
    """The documented JSON number rule: a ``float`` when the float's shortest text is the
    same number, else the exact ``Decimal``."""
    f = float(text)
    if math.isfinite(f) and Decimal(repr(f)) == Decimal(text):
        return f
    return Decimal(text)


def json_value(text: str) -> Any:
    """A JSON text parsed by the standard library with the documented number rule."""
    return json.loads(text, parse_float=exact_number, parse_int=int)


def _timetz(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


async def connect(dsn: str) -> asyncpg.Connection:
    """A connection whose values are the reference."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(SESSION)
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", format="text", encoder=str,
                                  decoder=json_value)
    for name in TEXT_TYPES:
        await conn.set_type_codec(name, schema="pg_catalog", format="text", encoder=str,
                                  decoder=str)
    # asyncpg drops the seconds of a timetz offset: read the output text instead
    await conn.set_type_codec("timetz", schema="pg_catalog", format="text", encoder=str,
                              decoder=_timetz)
    return conn


async def select_sql(conn: asyncpg.Connection, table: str) -> str:
    """A SELECT of ``table`` giving reference values: composite, range, multirange and
    ``"char"`` columns (and arrays of composites, ranges, 1-D) as output text, everything
    else as it is."""
    rows = await conn.fetch(
        "SELECT a.attname, a.atttypid::int AS oid, t.typtype::text AS typtype, "
        "e.typtype::text AS etype, "
        "coalesce(bt.typtype::text, '') AS btype "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
        "LEFT JOIN pg_type bt ON bt.oid = t.typbasetype "
        "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum", table)
    cols = []
    for r in rows:
        q = '"' + r["attname"].replace('"', '""') + '"'
        if r["oid"] == 18:  # "char": asyncpg gives bytes and takes no text codec for it
            cols.append(f"CASE WHEN {q} IS NULL THEN NULL ELSE format('%s', {q}) END AS {q}")
        elif r["typtype"] in ("c", "r", "m") or r["btype"] in ("c", "r", "m"):
            cols.append(f"{q}::text AS {q}")
        elif r["etype"] in ("c", "r", "m"):
            cols.append(f"CASE WHEN {q} IS NULL THEN NULL ELSE ARRAY(SELECT "
                        f"({q})[etlsync_i]::text FROM generate_subscripts({q}, 1) etlsync_i "
                        f"ORDER BY etlsync_i) END AS {q}")
        else:
            cols.append(q)
    return f"SELECT {', '.join(cols)} FROM {table}"


async def rows_by_id(conn: asyncpg.Connection, table: str) -> dict[Any, dict[str, Any]]:
    sql = await select_sql(conn, table)
    return {r["id"]: dict(r.items()) for r in await conn.fetch(sql)}


async def fetch_rows(dsn: str, table: str) -> dict[Any, dict[str, Any]]:
    """The reference rows of ``table`` by id, read on a connection of their own."""
    conn = await connect(dsn)
    try:
        return await rows_by_id(conn, table)
    finally:
        await conn.close()


def same(a: Any, b: Any) -> bool:
    """Equal values of the same kind (NaN equals NaN; 1 is not 1.0 nor True)."""
    if isinstance(a, uuid.UUID) and isinstance(b, uuid.UUID):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Decimal) and a.is_nan():
        return b.is_nan()
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The columns of ``want`` whose value ``got`` does not have (``same``)."""
    return [(k, got.get(k, "<missing>"), want[k]) for k in want
            if k not in got or not same(got[k], want[k])]
