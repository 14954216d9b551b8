"""A wide MariaDB type matrix through every path: MysqlCdcSource's snapshot, MysqlSource,
the binlog stream (inserts, update before and after images, deletes), a replay from the
stream's start, and the degraded mode without row metadata; and every character of every
character set. Each value equals what a plain SELECT gives (with the documented forms:
BIT as int, TIMESTAMP in UTC, zero dates as None, FLOAT as the shortest decimal of the
exact stored value), never etlsync's other path."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import struct
from typing import Any

import pytest

from etlsync.connectors.mysql import MysqlCdcSource, MysqlSource
from etlsync.connectors.mysql.binlog import BinlogStream
from etlsync.core.batch import Batch, Op
from tests.mysql.helpers import binlog_and_select, collect_changes, execute, fetch, options
from tests.mysql.test_value_defects import MinimalMetadata, WithoutMetadata

pytestmark = pytest.mark.integration

COLUMNS = {
    "ti": "tinyint", "tiu": "tinyint unsigned", "si": "smallint", "siu": "smallint unsigned",
    "mi": "mediumint", "miu": "mediumint unsigned", "i": "int", "iu": "int unsigned",
    "bi": "bigint", "biu": "bigint unsigned", "bo": "boolean", "b1": "bit(1)", "b7": "bit(7)",
    "b64": "bit(64)", "d65": "decimal(65,30)", "d10": "decimal(10,0)", "d55": "decimal(5,5)",
    "du": "decimal(8,3) unsigned", "f": "float", "fm": "float(7,3)", "fu": "float unsigned",
    "db": "double", "dbm": "double(10,2)", "y": "year", "dd": "date", "tm": "time",
    "tm1": "time(1)", "tm3": "time(3)", "tm6": "time(6)", "dtm": "datetime",
    "dtm2": "datetime(2)", "dtm6": "datetime(6)", "ts": "timestamp null default null",
    "ts3": "timestamp(3) null default null", "ts6": "timestamp(6) null default null",
    "c": "char(10)", "vc": "varchar(300)", "tt": "tinytext", "tx": "text", "mt": "mediumtext",
    "lt": "longtext", "bn": "binary(4)", "vb": "varbinary(20)", "tb": "tinyblob",
    "bl": "blob", "mb": "mediumblob", "e": "enum('a','b c','é')", "s": "set('x','y','z')",
    "j": "json", "u": "uuid", "i4": "inet4", "i6": "inet6", "geo": "point",
}
GENERATED = "gv int AS (id * 2) VIRTUAL, gs varchar(20) AS (upper(left(vc, 5))) STORED"
BITS = ("b1", "b7", "b64")
FLOATS = ("f", "fm", "fu")
DOUBLES = ("db", "dbm")
"""SELECT prints DOUBLE(M,D) with D decimals: the stored value is CAST(... AS DOUBLE)."""
TIMESTAMPS = ("ts", "ts3", "ts6")
DATES = ("dd", "dtm", "dtm2", "dtm6")

ROWS = [
    {"ti": "-128", "tiu": "0", "si": "-32768", "siu": "0", "mi": "-8388608", "miu": "0",
     "i": "-2147483648", "iu": "0", "bi": "-9223372036854775808", "biu": "0", "bo": "0",
     "b1": "b'0'", "b7": "b'0'", "b64": "0",
     "d65": "-99999999999999999999999999999999999.999999999999999999999999999999",
     "d10": "-9999999999", "d55": "-0.99999", "du": "0", "f": "-3.40282e38",
     "fm": "-9999.999", "fu": "0", "db": "-1.7976931348623157e308", "dbm": "-99999999.99",
     "y": "1901", "dd": "'1000-01-01'", "tm": "'-838:59:59'", "tm1": "'-838:59:58.9'",
     "tm3": "'-00:00:00.001'", "tm6": "'-00:00:00.000001'", "dtm": "'1000-01-01 00:00:00'",
     "dtm2": "'1000-01-01 00:00:00.01'", "dtm6": "'1000-01-01 00:00:00.000001'",
     "ts": "'1970-01-01 00:00:01'", "ts3": "'1970-01-01 00:00:01.001'",
     "ts6": "'1970-01-01 00:00:01.000001'", "c": "''", "vc": "''", "tt": "''", "tx": "''",
     "mt": "''", "lt": "''", "bn": "''", "vb": "''", "tb": "''", "bl": "''", "mb": "''",
     "e": "'a'", "s": "''", "j": "'[]'", "u": "'00000000-0000-0000-0000-000000000000'",
     "i4": "'0.0.0.0'", "i6": "'::'", "geo": "POINT(0, 0)"},
    {"ti": "127", "tiu": "255", "si": "32767", "siu": "65535", "mi": "8388607",
     "miu": "16777215", "i": "2147483647", "iu": "4294967295", "bi": "9223372036854775807",
     "biu": "18446744073709551615", "bo": "1", "b1": "b'1'", "b7": "b'1111111'",
     "b64": "b'" + "1" * 64 + "'",
     "d65": "99999999999999999999999999999999999.999999999999999999999999999999",
     "d10": "9999999999", "d55": "0.99999", "du": "99999.999", "f": "3.40282e38",
     "fm": "9999.999", "fu": "3.40282e38", "db": "1.7976931348623157e308",
     "dbm": "99999999.99", "y": "2155", "dd": "'9999-12-31'", "tm": "'838:59:59'",
     "tm1": "'838:59:58.9'", "tm3": "'838:59:58.999'", "tm6": "'838:59:58.999999'",
     "dtm": "'9999-12-31 23:59:59'", "dtm2": "'9999-12-31 23:59:59.99'",
     "dtm6": "'9999-12-31 23:59:59.999999'", "ts": "'2038-01-19 03:14:07'",
     "ts3": "'2038-01-19 03:14:07.999'", "ts6": "'2038-01-19 03:14:07.999999'",
     "c": "'abcdefghij'", "vc": "REPEAT('v', 300)", "tt": "REPEAT('t', 255)",
     "tx": "REPEAT('x', 65535)", "mt": "REPEAT('m', 70000)", "lt": "REPEAT('l', 100000)",
     "bn": "UNHEX('FFFFFFFF')", "vb": "UNHEX(REPEAT('FF', 20))", "tb": "UNHEX(REPEAT('00', 255))",
     "bl": "UNHEX(REPEAT('A5', 70))", "mb": "REPEAT(UNHEX('00FF'), 40000)", "e": "'é'",
     "s": "'x,y,z'",
     "j": "'{\"k\": [1, 2.5e300, \"s\", null, true, {\"n\": -0.0}], \"big\": 1e400}'",
     "u": "'ffffffff-ffff-ffff-ffff-ffffffffffff'", "i4": "'255.255.255.255'",
     "i6": "'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'", "geo": "POINT(1.5, -2)"},
    {},  # every value NULL
    {"tm": "'00:00:00'", "dd": "'0000-00-00'", "dtm": "'0000-00-00 00:00:00'",
     "ts": "'0000-00-00 00:00:00'", "y": "0", "f": "16777217", "fm": "3.14159",
     "fu": "0.1", "db": "0.1", "dbm": "-0.01", "d55": "0.00001", "e": "'b c'", "s": "'y'",
     "j": "'\"text\"'", "i6": "'::ffff:192.168.0.1'", "u": "'6ccd780c-baba-1026-9564-5b8c656024db'",
     "i4": "'10.0.0.1'", "c": "'pad  '", "vc": "'trail  '", "bn": "'ab'", "vb": "UNHEX('00')",
     "tm6": "'-12:34:56.789012'", "dtm2": "'2024-02-29 12:00:00.5'", "b64": "5",
     "ts3": "'2024-02-29 12:00:00.5'", "geo": "POINT(-1e300, 1e-300)"},
    {"dd": "'2024-00-00'", "dtm6": "'2024-02-00 00:00:00.000001'", "i6": "'1:0:2:3:4:5:6:7'",
     "u": "'0189f7c2-7e3a-7b1e-9f3c-123456789abc'", "i4": "'192.168.1.255'",
     "f": "1e-45", "fm": "-0.001", "tm1": "'-00:00:00.1'", "tm3": "'12:00:00.5'",
     "ts6": "'2024-06-01 12:34:56.789012'", "s": "'x,z'", "c": "'ü😀'", "vc": "'naïve 😀'",
     "j": "'{\"a\": 12345678901234567890123, \"b\": 3.141592653589793238462643383279}'"},
]
N = len(ROWS)


def _float32_shortest(x: float | None) -> float | None:
    if x is None:
        return None
    raw = struct.pack("<f", x)
    for digits in range(1, 10):
        text = f"{x:.{digits}g}"
        try:
            if struct.pack("<f", float(text)) == raw:
                return float(text)
        except OverflowError:
            continue
    raise AssertionError(x)


async def _reference(opts: Any, t: str) -> dict[int, dict[str, Any]]:
    """SELECT of the table in the documented forms (by id)."""
    cols = ", ".join(f"CAST({c} AS DOUBLE) AS {c}" if c in FLOATS + DOUBLES else c
                     for c in ["id", *COLUMNS, "gv", "gs"])
    rows = await fetch(opts, f"SELECT {cols} FROM `{t}` ORDER BY id")
    out = {}
    for r in rows:
        for c in BITS:
            r[c] = None if r[c] is None else int.from_bytes(r[c], "big")
        for c in FLOATS:
            r[c] = _float32_shortest(r[c])
        for c in TIMESTAMPS:
            r[c] = r[c].replace(tzinfo=dt.UTC) if isinstance(r[c], dt.datetime) else None
        for c in DATES:
            r[c] = r[c] if isinstance(r[c], (dt.date, dt.datetime)) else None
        out[r["id"]] = r
    return out


def _check(rows: list[dict[str, Any]], want: dict[int, dict[str, Any]]) -> int:
    """Each row (its id modulo 100 names the original row) equals the reference."""
    compared = 0
    for row in rows:
        ref = want[row["id"] % 100]
        assert row.keys() == ref.keys(), (row.keys() ^ ref.keys())
        for col, expected in ref.items():
            if col == "id":
                continue
            if col == "gv":  # computed from the id by the server, on every path
                expected = row["id"] * 2
            got = row[col]
            assert got == expected and type(got) is type(expected), (row["id"], col, got,
                                                                     expected)
            compared += 1
    return compared


async def _changes(agen: Any, into: list[Batch], n: int) -> None:
    """Read batches of ``agen`` into ``into`` until they hold ``n`` changes."""
    async def run() -> None:
        while sum(len(b) for b in into if b.ops) < n:
            into.append(await agen.__anext__())

    await asyncio.wait_for(run(), 20)


def _insert(t: str, row_id: int, row: dict[str, str]) -> str:
    cols = [c for c in COLUMNS if c in row]
    return (f"INSERT INTO `{t}` (id{''.join(', ' + c for c in cols)}) VALUES "
            f"({row_id}{''.join(', ' + row[c] for c in cols)})")


async def test_type_matrix_every_path(mysql_params: dict[str, Any], unique_name: str) -> None:
    opts = options(mysql_params)
    t = unique_name
    cols = ", ".join(f"{c} {ty}" for c, ty in COLUMNS.items())
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, {cols}, {GENERATED})")
    await execute(opts, *(_insert(t, i, r) for i, r in enumerate(ROWS, 1)), sql_mode="")
    want = await _reference(opts, t)
    assert len(want) == N

    plain = [r for b in [b async for b in MysqlSource(t, options=opts).read(None)]
             for r in b.rows]
    compared = _check(plain, want)
    source = MysqlCdcSource([t], options=opts, snapshot=True, heartbeat=0.2, chunk_rows=2)
    agen = source.read(None)
    got: list[Batch] = []
    names = ", ".join(COLUMNS)
    try:
        while not (got and got[-1].position and got[-1].position["phase"] == "stream"):
            got.append(await asyncio.wait_for(agen.__anext__(), 20))
        start = got[-1].position
        await execute(opts, f"INSERT INTO `{t}` (id, {names}) SELECT id + 100, {names} "
                            f"FROM `{t}` WHERE id <= {N}",
                      f"UPDATE `{t}` SET id = id + 100 WHERE id BETWEEN 101 AND 199",
                      f"DELETE FROM `{t}` WHERE id > 200", sql_mode="")

        await _changes(agen, got, 3 * N)
    finally:
        await agen.aclose()
    snap = [r for b in got if b.ops is None for r in b.rows]
    compared += _check(snap, want)
    changes = [(op, row, b.before[i] if b.before else None) for b in got if b.ops
               for i, (op, row) in enumerate(b.iter_changes())]
    assert [op for op, _, _ in changes] == [Op.INSERT] * N + [Op.UPDATE] * N + [Op.DELETE] * N
    compared += _check([row for _, row, _ in changes], want)
    compared += _check([before for op, _, before in changes if op is Op.UPDATE], want)
    assert compared > 5 * N * len(COLUMNS)

    # a replay from the stream's start decodes the same events to the same values
    again = MysqlCdcSource([t], options=opts, heartbeat=0.2)
    ragen = again.read(start)
    replayed: list[Batch] = []
    try:
        await _changes(ragen, replayed, 3 * N)
    finally:
        await ragen.aclose()
    assert [(op, row) for b in replayed if b.ops for op, row in b.iter_changes()] == [
        (op, row) for op, row, _ in changes]

    # without row metadata (NO_LOG, MINIMAL): names, charsets, members from the table now
    for stream_class in (WithoutMetadata, MinimalMetadata):
        degraded = stream_class(opts, start["binlog"], table_filter=lambda d, x: x == t)
        await degraded.connect()
        try:
            events = await collect_changes(degraded, 3 * N)
        finally:
            degraded.close()
        _check([r for e in events for r in e.rows], want)
        _check([r for e in events if e.before for r in e.before], want)


def _sequences(maxlen: int) -> list[bytes]:
    out = [bytes([b]) for b in range(256)]
    out += [bytes([a, b]) for a in range(0x80, 0x100) for b in range(256)]
    if maxlen >= 3:
        out += [bytes([0x8F, a, b]) for a in range(0xA1, 0xFF) for b in range(0xA1, 0xFF)]
    return out


UNICODE_SAMPLE = "a\u00e9\u20ac\u0436\U0001f600\u6f22\uac00\uff5e\u00a5\\\u0000\u007f\uffff\U0010ffff"


@pytest.mark.filterwarnings("ignore::pymysql.Warning")  # the server's, for invalid sequences
async def test_every_character_of_every_charset_matches_select(
        mysql_params: dict[str, Any], unique_name: str) -> None:
    """One MEDIUMTEXT column per character set of the server holding every well-formed
    character of it (all 256 bytes of a single-byte set; every one-, two- and three-byte
    sequence the server counts as one character of a multi-byte set), ENUM and SET
    columns in several sets: the binlog's values equal SELECT's."""
    opts = options(mysql_params)
    t = unique_name
    sets = {r["CHARACTER_SET_NAME"]: int(r["MAXLEN"]) for r in await fetch(
        opts, "SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS "
              "WHERE CHARACTER_SET_NAME <> 'binary'")}
    values: dict[str, str] = {}
    for cs, maxlen in sets.items():
        if cs.startswith(("utf", "ucs")):
            sample = UNICODE_SAMPLE if cs not in ("ucs2", "utf8mb3") else UNICODE_SAMPLE[:4]
            values[cs] = "CONVERT(UNHEX('" + sample.encode().hex() + f"') USING {cs})"
            continue
        if maxlen == 1:
            raw = bytes(range(256))
        else:
            cast = f"CAST(UNHEX(h) AS CHAR CHARACTER SET {cs})"
            rows = await fetch(opts, "SELECT h FROM JSON_TABLE('" + json.dumps(
                [s.hex() for s in _sequences(maxlen)]) + "', '$[*]' COLUMNS (h VARCHAR(8) "
                f"PATH '$')) AS seq WHERE CHAR_LENGTH({cast}) = 1 AND (LENGTH(h) > 2 OR "
                f"CONVERT({cast} USING utf8mb4) <> '?')")
            raw = b"".join(bytes.fromhex(r["h"]) for r in rows)
            assert len(raw) > 5000, cs
        values[cs] = f"CAST(UNHEX('{raw.hex()}') AS CHAR CHARACTER SET {cs})"
    cols = ", ".join(f"`c_{cs}` mediumtext CHARACTER SET {cs}" for cs in values)
    enums = ("e1 enum('a','é','€','ÿ') CHARACTER SET latin1, "
             "e2 set('ж','я','ё') CHARACTER SET cp1251, e3 enum('漢','字') CHARACTER SET sjis, "
             "e4 set('\u03b1','\u03c9') CHARACTER SET greek, e5 enum('😀','x') CHARACTER SET utf8mb4, "
             "e6 enum('한','국') CHARACTER SET euckr, e7 set('ü','ß') CHARACTER SET ucs2")
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, {cols}, {enums})")
    inserts = [f"INSERT INTO `{t}` (id, {', '.join(f'`c_{cs}`' for cs in values)}) VALUES "
               f"(1, {', '.join(values.values())})",
               f"INSERT INTO `{t}` (id, e1, e2, e3, e4, e5, e6, e7) VALUES "
               "(2, 'ÿ', 'ж,ё', '字', '\u03b1,\u03c9', '😀', '국', 'ü,ß'), "
               "(3, '€', '', '漢', '', 'x', '한', 'ß')"]
    for stream_class in (BinlogStream, WithoutMetadata):
        stream = stream_class(opts, table_filter=lambda d, x: x == t)
        await stream.connect()
        try:
            await execute(opts, *inserts, sql_mode="")
            events = await collect_changes(stream, 3)
        finally:
            stream.close()
        decoded = sorted((r for e in events for r in e.rows), key=lambda r: r["id"])
        selected = await fetch(opts, f"SELECT * FROM `{t}` ORDER BY id")
        assert len(decoded) == len(selected) == 3
        for got, want in zip(decoded, selected, strict=True):
            bad = [(k, v) for k, v in want.items() if got[k] != v]
            assert not bad, [(k, _first_difference(got[k], v)) for k, v in bad]
        assert len(selected[0]["c_eucjpms"]) > 10_000
        await execute(opts, f"DELETE FROM `{t}`")


def _first_difference(a: Any, b: Any) -> Any:
    if not isinstance(a, str) or not isinstance(b, str):
        return a, b
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return i, a[max(0, i - 3):i + 3], b[max(0, i - 3):i + 3], len(a), len(b)


async def test_random_uuid_inet6_inet4_values_match_select(mysql_params: dict[str, Any],
                                                           unique_name: str) -> None:
    """UUIDs of every version and none, IPv6 addresses with zero runs of every length and
    place (IPv4-mapped and -compatible ones too), IPv4 addresses: binlog text == SELECT's."""
    import ipaddress
    import random

    rnd = random.Random(15)
    opts = options(mysql_params)
    t = unique_name
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, u uuid, a inet6, b inet4)")
    rows = []
    for i in range(300):
        words = [rnd.choice([0, 0, 0, 1, 0xFFFF, rnd.getrandbits(16)]) for _ in range(8)]
        if i % 10 == 0:
            words[:6] = [0, 0, 0, 0, 0, 0xFFFF if i % 20 else 0]
        addr = ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words))
        raw = bytearray(rnd.getrandbits(8) for _ in range(16))
        if i % 3:  # RFC 4122 variant, versions 0-15 (MariaDB refuses some other forms)
            raw[6] = raw[6] & 0x0F | (i % 16) << 4
            raw[8] = raw[8] & 0x3F | 0x80
        u = raw.hex()
        rows.append(f"({i}, '{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}', "
                    f"INET6_ATON('{addr}'), '{ipaddress.IPv4Address(rnd.getrandbits(32))}')")
    decoded, selected = await binlog_and_select(opts, t, [f"INSERT INTO `{t}` VALUES "
                                                          + ", ".join(rows)])
    assert decoded == selected
    assert sum(r["u"] is not None for r in selected) > 250  # (some random forms are refused)
