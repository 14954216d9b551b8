"""A wide type matrix through PostgresCdcSource: the snapshot, single-row transactions,
a protocol v2 stream block (with a table first seen inside it), key changes (unchanged
TOAST values read back), updates, and a replay over protocol v1: every value equals the
server's own (tests/postgres_cdc/reference.py), never etlsync's other path."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import asyncpg
import pytest

from etlsync.connectors.postgres.cdc import PostgresCdcSource
from etlsync.connectors.postgres.types import UNCHANGED
from etlsync.core.batch import Batch, Op
from etlsync.core.errors import DataError
from tests.postgres_cdc import reference
from tests.postgres_cdc.conftest import Names, take

pytestmark = pytest.mark.integration

TYPES = [
    "CREATE TYPE {t}_mood AS ENUM ('happy', 'sad', 'NULL', 'with space', 'ü,{x}')",
    "CREATE DOMAIN {t}_pos AS int CHECK (VALUE > 0)",
    "CREATE DOMAIN {t}_dur AS interval",
    "CREATE DOMAIN {t}_dbox AS box",
    "CREATE TYPE {t}_pair AS (n int, i interval, s text, b bool)",
    "CREATE TYPE {t}_frange AS RANGE (subtype = float8)",
]

COLUMNS = {
    "i2": "smallint", "i4": "integer", "i8": "bigint", "oid_": "oid", "num": "numeric",
    "num_s": "numeric(12,4)", "r4": "real", "f8": "double precision", "money_": "money",
    "b": "boolean", "t": "text", "vc": "varchar(10)", "bp": "char(5)", "nm": "name",
    "ch": '"char"', "by": "bytea", "u": "uuid", "d": "date", "tm": "time(3)",
    "tz": "timetz", "ts": "timestamp", "ts0": "timestamp(0)", "tstz": "timestamptz",
    "iv": "interval", "ivym": "interval year to month", "j": "json", "jb": "jsonb",
    "inet_": "inet", "cidr_": "cidr", "mac": "macaddr", "mac8": "macaddr8", "pt": "point",
    "ln": "line", "lsg": "lseg", "bx": "box", "pth": "path", "pg": "polygon", "cir": "circle",
    "bt": "bit(8)", "vb": "bit varying", "x": "xml", "tsv": "tsvector", "tsq": "tsquery",
    "lsn": "pg_lsn", "rng": "int4range", "nrng": "numrange", "trng": "tstzrange",
    "drng": "daterange", "mrng": "int4multirange", "frng": "{t}_frange", "e": "{t}_mood",
    "dm": "{t}_pos", "di": "{t}_dur", "dbx": "{t}_dbox", "cp": "{t}_pair",
    "ai": "int[]", "ai2": "int[][]", "at": "text[]", "an": "numeric[]", "af": "float8[]",
    "ar4": "real[]", "ab": "bool[]", "aby": "bytea[]",
    "atz": "timetz[]", "aiv": "interval[]", "aj": "jsonb[]", "au": "uuid[]",
    "ainet": "inet[]", "abx": "box[]", "adbx": "{t}_dbox[]", "ae": "{t}_mood[]",
    "adm": "{t}_pos[]", "acp": "{t}_pair[]", "arng": "int4range[]", "apt": "point[]",
    "abp": "char(3)[]", "amac": "macaddr[]", "at2": "text[][]",
    "big": "text",
}

ROWS: list[dict[str, str]] = [
    {"i2": "-32768", "i4": "-2147483648", "i8": "-9223372036854775808", "oid_": "0",
     "num": "'NaN'", "num_s": "'3.1400'", "r4": "'NaN'", "f8": "'NaN'",
     "money_": "-92233720368547758.08", "b": "true", "t": "''", "vc": "''", "bp": "''",
     "nm": "'n'", "ch": "'x'", "by": "'\\x'", "u": "'00000000-0000-0000-0000-000000000000'",
     "d": "'-infinity'", "tm": "'00:00'", "tz": "'00:00:00+15:59'", "ts": "'-infinity'",
     "ts0": "'0001-01-01 00:00:00'", "tstz": "'-infinity'", "iv": "'0'", "ivym": "'-1-2'",
     "j": "'null'", "jb": "'null'", "inet_": "'::1'", "cidr_": "'::/0'",
     "mac": "'00:00:00:00:00:00'", "mac8": "'00:00:00:00:00:00:00:00'", "pt": "'(0,0)'",
     "ln": "'{1,-1,0}'", "lsg": "'[(0,0),(0,0)]'", "bx": "'(0,0),(0,0)'",
     "pth": "'[(0,0)]'", "pg": "'((0,0))'", "cir": "'<(0,0),0>'", "bt": "B'00000000'",
     "vb": "B''", "x": "''", "tsv": "''", "tsq": "''", "lsn": "'0/0'", "rng": "'empty'",
     "nrng": "'(,)'", "trng": "'empty'", "drng": "'(,)'", "mrng": "'{}'", "frng": "'empty'",
     "e": "'NULL'", "dm": "1", "di": "'-1 years'", "dbx": "'(0,0),(0,0)'",
     "cp": "'(,,,)'", "ai": "'{}'", "ai2": "'{}'", "at": "'{}'", "an": "'{}'",
     "af": "'{}'", "ar4": "'{}'", "ab": "'{}'", "aby": "'{}'", "ad": "'{}'", "ats": "'{}'",
     "atz": "'{}'", "aiv": "'{}'", "aj": "'{}'", "au": "'{}'", "ainet": "'{}'",
     "abx": "'{}'", "adbx": "'{}'", "ae": "'{}'", "adm": "'{}'", "acp": "'{}'",
     "arng": "'{}'", "apt": "'{}'", "abp": "'{}'", "amac": "'{}'", "at2": "'{}'"},
    {"i2": "32767", "i4": "2147483647", "i8": "9223372036854775807", "oid_": "4294967295",
     "num": "'Infinity'", "num_s": "'-99999999.9999'", "r4": "'Infinity'",
     "f8": "'-Infinity'", "money_": "92233720368547758.07", "b": "false",
     "t": "'it''s \"quoted\" \\ ü 😀 ' || chr(10) || chr(9) || 'NULL'", "vc": "'1234567890'",
     "bp": "'ab'", "nm": "repeat('n', 63)", "ch": "'\"'", "by": "'\\x00ff10'",
     "u": "'ffffffff-ffff-ffff-ffff-ffffffffffff'", "d": "'infinity'",
     "tm": "'23:59:59.999'", "tz": "'12:00:00+05:30:15'", "ts": "'infinity'",
     "ts0": "'9999-12-31 23:59:59'", "tstz": "'infinity'",
     "iv": "'-1 years -2 mons +3 days -04:05:06.000007'", "ivym": "'178000 years 11 mons'",
     "j": "' { \"dup\": 1, \"dup\": [1e400, 0.1, -0, 12345678901234567890123] } '",
     "jb": "'{\"b\": 1, \"a\": {\"c\": [1.000000000000000000001, 1e-400, \"ü😀\"]}}'",
     "inet_": "'192.168.0.1/24'", "cidr_": "'10.0.0.0/8'", "mac": "'08:00:2b:01:02:03'",
     "mac8": "'08:00:2b:01:02:03:04:05'", "pt": "'(1.5,-2.25)'", "ln": "'{1,2,3}'",
     "lsg": "'[(0,0),(1,1)]'", "bx": "'(1,1),(0,0)'", "pth": "'[(0,0),(1,1),(2,0)]'",
     "pg": "'((0,0),(1,1),(1,0))'", "cir": "'<(0,0),1.5>'", "bt": "B'10101010'",
     "vb": "B'1'", "x": "'<?xml version=\"1.0\"?><a b=\"1\">t&amp;</a>'",
     "tsv": "'a fat cat:1A sat'", "tsq": "'fat & (rat | cat)'", "lsn": "'16/B374D848'",
     "rng": "'[1,5)'", "nrng": "'(1.5,2.5]'", "trng": "'[2024-01-01 00:00+00,infinity)'",
     "drng": "'[2024-01-01,2024-02-01)'", "mrng": "'{[1,2),[5,7)}'",
     "frng": "'[-1.5,Infinity)'", "e": "'with space'", "dm": "2147483647",
     "di": "'1 mon -2 days 03:00:01.5'", "dbx": "'(2,2),(1,1)'",
     "cp": "'(1,\"1 day 02:00:00\",\"a \"\"b\"\" c\",t)'", "ai": "'{1,NULL,3}'",
     "ai2": "'{{1,2},{3,NULL}}'",
     "at": r"""'{"a b","q\"uote",NULL,"NULL","}{","","\\"}'""",
     "an": "'{NaN,1.50,-Infinity,0.000000000000000000001}'", "af": "'{NaN,-0,1e308,5e-324}'",
     "ar4": "'{0.1,NaN,-Infinity}'", "ab": "'{t,f,NULL}'", "aby": r"""'{"\\x00ff",NULL}'""",
     "ad": "'{infinity,2024-02-29}'", "ats": "'{\"2024-01-01 00:00:00+00\",infinity}'",
     "atz": "'{\"12:00:00+05:30:15\",\"00:00:00-15:59:59\"}'",
     "aiv": "'{\"1 day\",\"-00:00:01.5\",P1Y}'",
     "aj": "ARRAY['{\"a\": 1e400}'::jsonb, '[]', NULL]",
     "au": "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'",
     "ainet": "'{::1,10.0.0.1/8,::ffff:1.2.3.4}'", "abx": "'{(1,1),(0,0);(3,4),(2,2)}'",
     "adbx": "'{(1,1),(0,0);NULL;(3,4),(2,2)}'", "ae": "'{happy,\"NULL\",\"with space\",NULL}'",
     "adm": "'{1,2}'", "acp": "ARRAY['(1,P1D,x,t)'::{t}_pair, '(,,,)', NULL]",
     "arng": "'{\"[1,2)\",empty,NULL}'", "apt": "'{\"(1,2)\",\"(3.5,-4)\"}'",
     "abp": "'{a,\"b c\",NULL}'", "amac": "'{08:00:2b:01:02:03}'",
     "at2": "'{{a,b},{\"c d\",NULL}}'",
     "big": "repeat('0123456789abcdef', 600)"},
    {"num": "'-Infinity'", "r4": "'-Infinity'", "f8": "'Infinity'", "num_s": "'-0.0001'",
     "t": "'NULL'", "d": "'0001-01-01'", "tm": "'12:34:56.789'", "tz": "'23:59:59.999999-15:59:59'",
     "ts": "'2000-01-01 00:00:00.000001'", "tstz": "'2024-06-01 12:34:56.789+05:30'",
     "iv": "'P1Y2M3DT4H5M6.5S'", "j": "'[]'", "jb": "'{}'", "x": "'plain text'",
     "e": "'ü,{x}'", "di": "'-00:00:00.000001'", "big": "repeat('z', 9000)"},
    {"num": "'123456789012345678901234567890.123456789012345678901234567890'",
     "r4": "'1.17549435e-38'", "f8": "'2.2250738585072014e-308'", "d": "'9999-12-31'",
     "ts": "'9999-12-31 23:59:59.999999'", "tstz": "'1970-01-01 00:00:00+00'",
     "iv": "'-1000000 years'", "j": "'\"str\"'", "jb": "'12345678901234567890.5'",
     "x": "'<a/><b/>'", "pt": "'(1e300,-1e-300)'"},
    {"num": "'-0.000000000000000000001'", "r4": "'3.4028235e38'", "f8": "'1e-320'",
     "i4": "0", "tm": "'00:00:00.001'",
     "j": "'{\"a\": [1, 2.5, null, true, \"x\", {\"y\": {}}]}'", "jb": "'[1e400, -0.0]'"},
    {},  # every value NULL
]
N = len(ROWS)
FILLER = 1500


def _create(t: str, types: str) -> str:
    cols = ", ".join(f"{c} {ty.replace('{t}', types)}" for c, ty in COLUMNS.items())
    return f"CREATE TABLE {t} (id int PRIMARY KEY, {cols}, g int GENERATED ALWAYS AS (i2::int * 2) STORED)"


def _insert(t: str, types: str, row_id: int, row: dict[str, str]) -> str:
    cols = [c for c in COLUMNS if row.get(c)]
    values = [row[c].replace("{t}", types) for c in cols]
    return (f"INSERT INTO {t} (id{''.join(', ' + c for c in cols)}) "
            f"VALUES ({row_id}{''.join(', ' + v for v in values)})")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a == b == 0:
        return math.copysign(1, a) == math.copysign(1, b)
    return reference.same(a, b)


def _check(rows: list[tuple[Op, dict[str, Any]]], want: dict[int, dict[str, Any]],
           unchanged_ok: bool = False) -> int:
    """Compare each row (its id modulo 100 names the original row) with the server's;
    ``unchanged_ok``: an update may leave TOASTed values out (UNCHANGED)."""
    compared = 0
    for op, row in rows:
        if op is Op.DELETE:
            continue
        base = want[row["id"] % 100]
        assert "g" not in row
        for col, expected in base.items():
            if col in ("id", "g"):
                continue
            got = row.get(col, "<missing>")
            if got is UNCHANGED and unchanged_ok and op is Op.UPDATE:
                continue
            assert _same(got, expected), (row["id"], col, got, expected)
            compared += 1
    return compared


async def test_type_matrix_snapshot_stream_blocks_key_changes_and_replay(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    t, tb = names.table, names.table + "_b"
    names.tables.append(tb)
    for ddl in TYPES:
        statement = ddl.replace("{t}", t)
        await pg.execute(statement)
        names.types.append(("DOMAIN" if " DOMAIN " in statement else "TYPE", statement.split()[2]))
    await pg.execute(_create(t, t))
    await pg.execute(f"ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL")
    await pg.execute(_create(tb, t))
    for i, row in enumerate(ROWS, 1):
        await pg.execute(_insert(t, t, i, row))
    src = PostgresCdcSource(pg_dsn, slot=names.slot, publication=names.publication,
                            tables=[t, tb], status_interval=0.5, batch_rows=400,
                            replication_settings={"logical_decoding_work_mem": "64kB"})
    agen = src.read(None)
    snap = await take(agen, lambda g: bool(g) and set(g[-1].position or {}) == {"lsn"})
    handover = snap[-1].position
    # single-row transactions; then one streamed transaction (a table first seen in it,
    # filler rows to pass logical_decoding_work_mem); key changes; updates
    cols = ", ".join(COLUMNS)
    for i in range(1, N + 1):
        await pg.execute(f"INSERT INTO {t} (id, {cols}) SELECT id + 100, {cols} FROM {t} "
                         f"WHERE id = {i}")
    async with pg.transaction():
        await pg.execute(f"INSERT INTO {t} (id, {cols}) SELECT id + 200, {cols} FROM {t} "
                         f"WHERE id <= {N}")
        await pg.execute(f"INSERT INTO {tb} (id, {cols}) SELECT id, {cols} FROM {t} "
                         f"WHERE id <= {N}")
        await pg.execute(f"INSERT INTO {tb} (id, t) SELECT 100 + g, repeat('p', 120) "
                         f"FROM generate_series(1, {FILLER}) g")
    await pg.execute(f"UPDATE {t} SET id = id + 1000 WHERE id BETWEEN 101 AND 199")
    await pg.execute(f"UPDATE {t} SET i2 = i2 WHERE id BETWEEN 201 AND 299")
    total = N + 2 * N + FILLER + 2 * N + N

    def done(got: list[Batch]) -> bool:
        return sum(len(b) for b in got) >= total and got[-1].position is not None

    streamed = await take(agen, done, timeout=90)
    await agen.aclose()
    assert src.streamed_transactions >= 1
    want = {k: v for k, v in (await reference.fetch_rows(pg_dsn, t)).items() if k <= N}
    want_b = await reference.fetch_rows(pg_dsn, tb)
    assert len(want) == N
    compared = _check([(op, r) for b in snap for op, r in b.iter_changes()], want)
    changes = [(op, r, b.stream) for b in streamed for op, r in b.iter_changes()]
    main = [(op, r) for op, r, s in changes if s == f"public.{t}"]
    side = [(op, r) for op, r, s in changes if s == f"public.{tb}"]
    assert [op for op, _ in main] == (
        [Op.INSERT] * (2 * N) + [Op.DELETE, Op.INSERT] * N + [Op.UPDATE] * N)
    compared += _check(main, want, unchanged_ok=True)
    key_changed = [r for op, r in main if op is Op.INSERT and r["id"] > 1000]
    assert len(key_changed) == N  # unchanged TOAST values read back from the table:
    assert not [r for r in key_changed if UNCHANGED in r.values()]
    assert any(UNCHANGED in r.values() for op, r in main if op is Op.UPDATE)
    assert len(side) == N + FILLER
    compared += _check([c for c in side if c[1]["id"] <= N], want)
    for _, row in side[N:]:
        assert row == {**{c: None for c in row if c not in ("id", "t")}, "id": row["id"],
                       "t": want_b[row["id"]]["t"]}
    assert compared > 6 * N * len(COLUMNS) * 0.6

    # a replay from the handover over protocol v1 gives the same values again
    replay = PostgresCdcSource(pg_dsn, slot=names.slot, publication=names.publication,
                               tables=[t, tb], status_interval=0.5, streaming=False)
    ragen = replay.read(handover)
    again = await take(ragen, done, timeout=90)
    await ragen.aclose()
    assert replay.streamed_transactions == 0
    changes2 = [(op, r) for b in again for op, r in b.iter_changes()
                if b.stream == f"public.{t}"]
    assert [op for op, _ in changes2] == [op for op, _ in main]
    _check(changes2, want, unchanged_ok=True)


@pytest.mark.parametrize(("column", "value"), [
    ("date", "'0044-03-15 BC'"), ("timestamp", "'10000-01-01 00:00'"),
    ("time", "'24:00:00'"), ("interval", "'178000000 years'")])
async def test_values_python_cannot_hold_are_data_errors_on_both_paths(
        pg: asyncpg.Connection, names: Names, pg_dsn: str, column: str, value: str) -> None:
    """A value without a Python equivalent stops the pipeline with a DataError naming
    table, column and value, in the snapshot and in the stream (never a wrong value)."""
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v {column})")
    await pg.execute(f"INSERT INTO {t} VALUES (1, {value})")
    agen = PostgresCdcSource(pg_dsn, slot=names.slot, publication=names.publication,
                             tables=[t], status_interval=0.5).read(None)
    try:
        with pytest.raises(DataError, match=rf"{t}.*'v'"):
            await take(agen, lambda g: sum(len(b) for b in g) >= 1)
    finally:
        await agen.aclose()
    agen = PostgresCdcSource(pg_dsn, slot=names.slot, publication=names.publication,
                             tables=[t], status_interval=0.5, snapshot="never").read(None)
    try:
        task = asyncio.ensure_future(take(agen, lambda g: sum(len(b) for b in g) >= 1))
        await asyncio.sleep(0.5)
        await pg.execute(f"INSERT INTO {t} VALUES (2, {value})")
        with pytest.raises(DataError, match=rf"{t}.*'v'"):
            await task
    finally:
        await agen.aclose()
