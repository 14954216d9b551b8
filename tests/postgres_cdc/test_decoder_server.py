"""The decoder against the server's own view: the same changes read through test_decoding
(pg_logical_slot_peek_changes) agree with etlsync's pgoutput values, and the snapshot path
(asyncpg) returns the same values as the stream."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

from etlsync.connectors.postgres.cdc import PostgresCdcSource
from etlsync.connectors.postgres.replication.snapshot import TableReader, prepare_connection
from etlsync.connectors.postgres.types import UNCHANGED
from etlsync.core.batch import Op
from etlsync.core.schema import ColumnType
from tests.postgres_cdc.conftest import Names, take

pytestmark = pytest.mark.integration

COLUMNS = """
  id int PRIMARY KEY, i2 smallint, i8 bigint, n numeric(14,3), f4 real, f8 double precision,
  t text, vc varchar(20), b boolean, d date, tm time, tmz timetz, ts timestamp, tstz timestamptz,
  iv interval, u uuid, j json, jb jsonb, by bytea, e {enum}, ai int[], at text[], an numeric[],
  ae {enum}[], pt point, dm {domain}
"""

VALUES = [
    "(1, -32768, 9223372036854775807, 12345678901.125, 1.1, 0.1, 'plain', 'v', true, "
    "'2024-02-29', '23:59:59.999999', '12:00+05:30', '2024-01-01 00:00:00.5', "
    "'2024-06-01 12:34:56.789+02', '1 year 2 mons 3 days 04:05:06.5', "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2.5, null]}', '{\"k\": \"v\"}', "
    "'\\x00ff10', 'sad', '{1,NULL,3}', '{\"a b\",\"q\\\"uote\",NULL,\"}{\"}', '{1.5,NaN}', "
    "'{happy,sad}', '(1.5,2)', 42)",
    "(2, NULL, NULL, 'NaN', 'Infinity', '-Infinity', 'it''s \"quoted\" \\ and ünïcødé', NULL, "
    "false, 'infinity', '00:00', NULL, '-infinity', 'infinity', '-3 days -00:00:01', NULL, "
    "'[]', 'null', '\\x', 'happy', '{}', '{{a,b},{c,d}}', NULL, '{}', NULL, NULL)",
    "(3, 7, -1, -0.001, -0.0, 1e300, '', 'x', NULL, '0001-01-01', '10:00', '00:00:00+00', "
    "'1999-12-31 23:59:59', '1970-01-01 00:00:00+00', '0', NULL, '\"str\"', '[1,\"two\"]', "
    "NULL, NULL, NULL, NULL, '{-1.10}', NULL, '(0,0)', -5)",
]

_TD_COL = re.compile(r"(\w+)\[([^\]]*(?:\[\])?)\]:")


def parse_test_decoding(line: str) -> tuple[str, dict[str, Any]]:
    """``(action, {column: text value | None | UNCHANGED})`` of one test_decoding line."""
    _head, _, rest = line.partition(": ")
    action, _, rest = rest.partition(": ")
    cols: dict[str, Any] = {}
    pos = 0
    while pos < len(rest):
        if rest.startswith("old-key: ", pos) or rest.startswith("new-tuple: ", pos):
            pos = rest.index(" ", pos) + 1
            continue
        m = _TD_COL.match(rest, pos)
        assert m is not None, rest[pos:]
        name, pos = m.group(1), m.end()
        if rest.startswith("'", pos):
            out, pos = [], pos + 1
            while True:
                j = rest.index("'", pos)
                out.append(rest[pos:j])
                if rest.startswith("''", j):
                    out.append("'")
                    pos = j + 2
                    continue
                pos = j + 1
                break
            cols[name] = "".join(out)
        else:
            end = rest.find(" ", pos)
            end = len(rest) if end < 0 else end
            raw = rest[pos:end]
            pos = end
            cols[name] = {"null": None, "unchanged-toast-datum": UNCHANGED,
                          "true": "t", "false": "f"}.get(raw, raw)
        pos += 1
    return action, cols


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "is_nan") and hasattr(b, "is_nan") and a.is_nan() and b.is_nan():
        return True
    return bool(a == b)


async def test_pgoutput_values_agree_with_test_decoding_and_snapshot(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    enum, domain = f"{names.table}_mood", f"{names.table}_dom"
    await pg.execute(f"CREATE TYPE {enum} AS ENUM ('happy', 'sad')")
    await pg.execute(f"CREATE DOMAIN {domain} AS int CHECK (VALUE > -10)")
    await pg.execute(f"CREATE TABLE {names.table} ({COLUMNS.format(enum=enum, domain=domain)})")
    td_slot = names.slot + "_td"
    names.slots.append(td_slot)
    await pg.execute(f"CREATE PUBLICATION {names.publication} FOR TABLE {names.table}")
    await pg.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", names.slot)
    await pg.execute("SELECT pg_create_logical_replication_slot($1, 'test_decoding')", td_slot)
    for v in VALUES:
        await pg.execute(f"INSERT INTO {names.table} VALUES {v}")
    await pg.execute(f"UPDATE {names.table} SET t = t || '!', ai = ai || 9 WHERE id = 1")
    await pg.execute(f"DELETE FROM {names.table} WHERE id = 3")
    try:
        source = PostgresCdcSource(pg_dsn, slot=names.slot, publication=names.publication,
                                   tables=[names.table], snapshot="never", status_interval=1)
        agen = source.read(None)
        batches = await take(agen, lambda got: sum(len(b.rows) for b in got) >= 5)
        await agen.aclose()
    finally:
        for t in (enum, domain):
            names.tables.append(t)  # dropped after the table (CASCADE handles order)
    changes = [(op, row, b) for b in batches for op, row in b.iter_changes()]
    assert [c[0] for c in changes] == [Op.INSERT] * 3 + [Op.UPDATE, Op.DELETE]
    schema = batches[0].schema
    assert schema is not None
    types = {c.name: c for c in schema.columns}
    assert types["e"].type is ColumnType.STRING and types["e"].native == enum
    assert types["pt"].type is ColumnType.UNKNOWN and types["pt"].native == "point"
    assert types["dm"].type is ColumnType.INTEGER
    assert types["ai"].native.endswith("[]")

    await pg.execute("SET DateStyle = ISO; SET TimeZone = UTC; SET IntervalStyle = iso_8601; "
                     "SET extra_float_digits = 3")
    lines = [r["data"] for r in await pg.fetch(
        "SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL)", td_slot)
        if r["data"].startswith(f"table public.{names.table}: ")]  # not other tests' tables
    assert len(lines) == len(changes)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await prepare_connection(conn)
        reader = TableReader(names.table)
        relation = await reader.prepare(conn, {})
        snap = {r["id"]: r for r in await reader.chunk(conn, None, 100)}
    finally:
        await conn.close()
    decoders = dict(zip(relation.names, relation.decoders, strict=True))
    compared = 0
    for line, (op, row, _) in zip(lines, changes, strict=True):
        action, td = parse_test_decoding(line)
        assert action == op.value.upper()
        for col, text in td.items():
            if col not in row:
                continue
            expected = text if text is None or text is UNCHANGED else decoders[col](text.encode())
            assert _same(row[col], expected), (col, row[col], expected, text)
            compared += 1
    assert compared > 60

    # the snapshot path (asyncpg) returns what the stream returned
    streamed = {row["id"]: row for op, row, _ in changes if op is not Op.DELETE}
    assert set(snap) == {1, 2}
    for key, row in snap.items():
        for col, value in row.items():
            assert _same(value, streamed[key][col]), (key, col, value, streamed[key][col])

