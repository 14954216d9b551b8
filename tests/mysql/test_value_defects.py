"""Regression tests of issue 15 (MariaDB): every binlog value equals what a plain SELECT
gives (over a utf8mb4 connection, time zone UTC), no change is lost silently, and the
start position's GTID is known."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from etlsync.connectors.mysql import MysqlCdcSource, MysqlSource
from etlsync.connectors.mysql import events as ev
from etlsync.connectors.mysql.binlog import BinlogStream
from etlsync.core.batch import Batch, Op
from etlsync.core.errors import ServiceNotReady
from tests.mysql.helpers import binlog_and_select, execute, fetch, options

pytestmark = pytest.mark.integration


async def _read(source: MysqlCdcSource, write: Callable[[], Awaitable[None]],
                until: Callable[[list[Batch]], bool], timeout: float = 20.0) -> list[Batch]:
    """Batches of ``source`` from its start position (taken before ``write`` runs)."""
    agen = source.read(None)
    got: list[Batch] = []
    try:
        got.append(await asyncio.wait_for(agen.__anext__(), timeout))

        async def run() -> None:
            while not until(got):
                got.append(await agen.__anext__())

        await write()
        await asyncio.wait_for(run(), timeout)
    finally:
        await agen.aclose()
    return got


def _changes(batches: list[Batch]) -> list[tuple[Op, dict[str, Any], str]]:
    return [(op, row, b.stream) for b in batches for op, row in b.iter_changes()]


def _rows(batches: list[Batch]) -> int:
    return sum(len(b) for b in batches)


def strip_metadata(payload: bytes, body: int, keep: frozenset[int] = frozenset()) -> bytes:
    """A TABLE_MAP event as a server with ``binlog_row_metadata`` MINIMAL (``keep`` the
    signedness and charset fields) or NO_LOG (``keep`` nothing) writes it: the optional
    metadata fields other than ``keep`` cut off."""
    p = body + 8
    p += payload[p] + 2
    p += payload[p] + 2
    ncols, p = ev.lenenc(payload, p)
    p += ncols
    mlen, p = ev.lenenc(payload, p)
    p += mlen + (ncols + 7) // 8
    out, q = bytearray(payload[:p]), p
    while q < len(payload):
        kind = payload[q]
        length, r = ev.lenenc(payload, q + 1)
        if kind in keep:
            out += payload[q:r + length]
        q = r + length
    return bytes(out)


class WithoutMetadata(BinlogStream):
    """The stream a server with less row metadata gives (the row events are the same)."""

    keep: frozenset[int] = frozenset()

    async def _table_map(self, payload: bytes, body: int, tables: dict[int, Any]) -> None:
        await super()._table_map(strip_metadata(payload, body, self.keep), body, tables)


class MinimalMetadata(WithoutMetadata):
    keep = frozenset({1, 2, 3, 10, 11})


def _assert_same(decoded: list[dict[str, Any]], selected: list[dict[str, Any]]) -> None:
    assert len(decoded) == len(selected)
    for got, want in zip(decoded, selected, strict=True):
        bad = [(k, got.get(k), v) for k, v in want.items() if got.get(k) != v
               or type(got.get(k)) is not type(v)]
        assert not bad, (want["id"], bad)


async def test_statement_format_change_to_a_captured_table_stops_the_stream(
        mysql_params: dict[str, Any], unique_name: str) -> None:
    """Item 8: a change logged as a statement cannot be read as rows: the stream stops
    with an error naming it; statements on other tables do not stop it."""
    opts = options(mysql_params)
    t, other = unique_name, unique_name + "_o"
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, v int)",
                  f"CREATE TABLE `{other}` (id int primary key)")
    source = MysqlCdcSource([t], options=opts, heartbeat=0.2)

    async def write() -> None:
        await execute(opts, "SET SESSION binlog_format = 'STATEMENT'",
                      f"INSERT INTO `{other}` VALUES (1)", "SET SESSION binlog_format = 'ROW'",
                      f"INSERT INTO `{t}` VALUES (2, 2)")

    got = await _read(source, write, lambda g: _rows(g) >= 1)
    assert [row for _, row, _ in _changes(got)] == [{"id": 2, "v": 2}]

    async def statement() -> None:
        await execute(opts, "SET SESSION binlog_format = 'STATEMENT'",
                      f"INSERT INTO `{t}` VALUES (1, 1)", "SET SESSION binlog_format = 'ROW'",
                      f"INSERT INTO `{t}` VALUES (3, 3)")

    with pytest.raises(ServiceNotReady, match=r"(?s)statement.*INSERT INTO .*binlog_format"):
        await _read(MysqlCdcSource([t], options=opts, heartbeat=0.2), statement,
                    lambda g: _rows(g) >= 1)


async def test_truncate_of_a_captured_table_is_a_change(mysql_params: dict[str, Any],
                                                       unique_name: str) -> None:
    """Item 9: TRUNCATE of a captured table arrives as a TRUNCATE change, in order."""
    opts = options(mysql_params)
    t, other = unique_name, unique_name + "_o"
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key)",
                  f"CREATE TABLE `{other}` (id int primary key)")

    async def write() -> None:
        await execute(opts, f"INSERT INTO `{t}` VALUES (1)", f"TRUNCATE TABLE `{other}`",
                      f"TRUNCATE `{t}`", f"INSERT INTO `{t}` VALUES (2)")

    got = await _read(MysqlCdcSource([t], options=opts, heartbeat=0.2), write,
                      lambda g: _rows(g) >= 3)
    assert [(op, row, s) for op, row, s in _changes(got)] == [
        (Op.INSERT, {"id": 1}, t), (Op.TRUNCATE, {}, t), (Op.INSERT, {"id": 2}, t)]
    truncate = next(b for b in got if b.ops == [Op.TRUNCATE])
    assert truncate.position is not None  # a transaction of its own: a resume point


FLOATS = ["16777217", "3.14", "0.1", "-0.0", "3.40282e38", "1.17549e-38", "1e-45", "123456.789",
          "7.0e-10", "1234567"]


async def test_float_is_one_value_on_both_paths(mysql_params: dict[str, Any],
                                                unique_name: str) -> None:
    """Item 10: a FLOAT row has one value, snapshot or stream: the shortest decimal that
    round-trips the stored 32-bit value (the server's exact value, CAST AS DOUBLE)."""
    import struct

    opts = options(mysql_params)
    t = unique_name
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, f float, fm float(7,3))",
                  f"INSERT INTO `{t}` VALUES " + ", ".join(
                      f"({i}, {v}, {v if abs(float(v)) < 1e3 else 'NULL'})"
                      for i, v in enumerate(FLOATS)))
    exact = await fetch(opts, f"SELECT id, CAST(f AS DOUBLE) AS f, CAST(fm AS DOUBLE) AS fm "
                              f"FROM `{t}` ORDER BY id")

    def shortest(x: float | None) -> float | None:
        if x is None:
            return None
        raw = struct.pack("<f", x)
        assert struct.unpack("<f", raw)[0] == x  # the stored value is a float32
        for digits in range(1, 10):
            text = f"{x:.{digits}g}"
            try:
                if struct.pack("<f", float(text)) == raw:
                    return float(text)
            except OverflowError:  # rounded up beyond the largest float32
                continue
        raise AssertionError(x)

    want = {r["id"]: {"id": r["id"], "f": shortest(r["f"]), "fm": shortest(r["fm"])}
            for r in exact}
    source = MysqlCdcSource([t], options=opts, snapshot=True, heartbeat=0.2)

    async def write() -> None:
        await execute(opts, f"INSERT INTO `{t}` SELECT id + 100, f, fm FROM `{t}`")

    got = await _read(source, write, lambda g: sum(
        op is Op.INSERT for op, _, _ in _changes(g)) >= 2 * len(FLOATS))
    snap = [b for b in got if b.ops is None and b.rows]
    streamed = [row for op, row, _ in _changes(got) if op is Op.INSERT and row["id"] >= 100]
    plain: list[Batch] = [b async for b in MysqlSource(t, options=opts).read(None)]
    for rows in ([r for b in snap for r in b.rows],
                 [r for b in plain for r in b.rows if r["id"] < 100],
                 [{**r, "id": r["id"] - 100} for r in streamed]):
        assert len(rows) == len(FLOATS)
        for row in rows:
            assert row == want[row["id"]], (row, want[row["id"]])
    assert want[0]["f"] == 16777216.0 and want[1]["f"] == 3.14


async def test_latin1_decodes_as_the_server_does(mysql_params: dict[str, Any],
                                                 unique_name: str) -> None:
    """Item 11: all 256 latin1 bytes (0x81, 0x8D, 0x8F, 0x90, 0x9D are U+0081 ... in
    MariaDB's latin1), with row metadata and without."""
    opts = options(mysql_params)
    t = unique_name
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, l varchar(300) "
                        "CHARACTER SET latin1, c char(10) CHARACTER SET latin1, "
                        "b text CHARACTER SET latin1 COLLATE latin1_bin)")
    value = f"CAST(UNHEX('{bytes(range(256)).hex()}') AS CHAR CHARACTER SET latin1)"
    inserts = [f"INSERT INTO `{t}` VALUES (1, {value}, UNHEX('8081FF'), {value})"]
    for stream_class in (BinlogStream, WithoutMetadata):
        decoded, selected = await binlog_and_select(opts, t, inserts, stream_class)
        _assert_same(decoded, selected)
        assert decoded[0]["l"][0x80:0x82] == "€\x81"
        await execute(opts, f"DELETE FROM `{t}`")


async def test_enum_and_set_members_in_their_columns_charset(mysql_params: dict[str, Any],
                                                             unique_name: str) -> None:
    """Item 12: ENUM and SET members decode with the column's character set; without
    row metadata an emoji member is itself, not '?'."""
    opts = options(mysql_params)
    t = unique_name
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, "
                        "e enum('a','é','€') CHARACTER SET latin1, "
                        "s set('ж','я','x') CHARACTER SET cp1251, "
                        "u enum('😀','ü','plain') CHARACTER SET utf8mb4, "
                        "g enum('\u03b1','\u03b2') CHARACTER SET greek)")
    inserts = [f"INSERT INTO `{t}` VALUES (1, 'é', 'ж,я', '😀', 'β'), (2, '€', 'x', 'ü', '\u03b1'),"
               " (3, 'a', '', 'plain', NULL)"]
    for stream_class in (BinlogStream, WithoutMetadata, MinimalMetadata):
        decoded, selected = await binlog_and_select(opts, t, inserts, stream_class)
        _assert_same(decoded, selected)
        await execute(opts, f"DELETE FROM `{t}`")


CHARSETS = {
    "u16": "utf16", "u16le": "utf16le", "u32": "utf32", "ucs": "ucs2",
    "nopad": "latin1 COLLATE latin1_nopad_bin", "ejp": "eucjpms", "uj": "ujis",
    "sj": "sjis", "kr": "euckr", "b5": "big5", "heb": "hebrew", "c1250": "cp1250",
}
SAMPLE = "a\u00e9\u20ac\u03a9\u0436\U0001f600\u6f22\u5b57\u304b\u306a\u30ab\u30ca\ud55c\uad6d\uc5b4" \
         "\u8868\u793a\u30bd\u2460\uff5e\u00a5\uff3c\\"
"""Latin, Cyrillic, an emoji, Japanese (including 0x5C-trail kanji), Korean, a circled
digit, fullwidth tilde and reverse solidus, yen, backslash: where charsets differ."""
SAMPLE_SQL = SAMPLE.replace("\\", "\\\\")


async def test_other_charsets_uuid_and_inet_types(mysql_params: dict[str, Any],
                                                  unique_name: str) -> None:
    """Item 13: character sets PyMySQL does not know (or Python cannot decode), and
    MariaDB's UUID, INET6 and INET4 types, equal SELECT."""
    opts = options(mysql_params)
    t = unique_name
    cols = ", ".join(f"{c} varchar(100) CHARACTER SET {cs}" for c, cs in CHARSETS.items())
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, {cols}, u uuid, i6 inet6, "
                        "i4 inet4)")
    # each column takes what its character set can hold of the sample (the rest is '?')
    values = ", ".join(f"CONVERT('{SAMPLE_SQL}' USING {cs.split()[0]})"
                       for cs in CHARSETS.values())
    inserts = [f"INSERT INTO `{t}` VALUES (1, {values}, '6ccd780c-baba-1026-9564-5b8c656024db', "
               "'::ffff:1.2.3.4', '10.0.0.1'), "
               f"(2, {', '.join(['NULL'] * len(CHARSETS))}, '00000000-0000-0000-0000-000000000000',"
               " '1:0:2:3:4:5:6:7', '0.0.0.0'), "
               f"(3, {', '.join(['NULL'] * len(CHARSETS))}, NULL, '::', NULL)"]
    decoded, selected = await binlog_and_select(opts, t, inserts)
    _assert_same(decoded, selected)
    assert decoded[0]["u16"] == SAMPLE and decoded[0]["i6"] == "::ffff:1.2.3.4"


async def test_start_position_gtid_when_binlog_gtid_pos_is_null(
        mysql_params: dict[str, Any], unique_name: str) -> None:
    """Item 14: after an event larger than max_allowed_packet, BINLOG_GTID_POS() is NULL
    for later positions of that binlog file: the GTID position is computed from the file,
    and it equals the server's own (the GTID list the next file starts with)."""
    opts = options(mysql_params)
    t = unique_name
    packet = (await fetch(opts, "SELECT @@max_allowed_packet AS m"))[0]["m"]
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key, b longblob)",
                  f"INSERT INTO `{t}` VALUES (1, REPEAT('x', {packet // 2 + 1000}))",
                  f"UPDATE `{t}` SET b = CONCAT(b, 'y')")  # before + after image > packet
    try:
        status = (await fetch(opts, "SHOW MASTER STATUS"))[0]
        file, pos = status["File"], int(status["Position"])
        null = (await fetch(opts, f"SELECT BINLOG_GTID_POS('{file}', {pos}) AS g"))[0]["g"]
        assert null is None  # what the server gives: the case this test is about
        start = await BinlogStream(opts).current_position()
        assert start["gtid"], start
    finally:
        await execute(opts, f"DROP TABLE `{t}`", "FLUSH BINARY LOGS")
    logs = await fetch(opts, "SHOW BINARY LOGS")
    names = [r["Log_name"] for r in logs]
    end = int(next(r["File_size"] for r in logs if r["Log_name"] == file))
    following = names[names.index(file) + 1]
    server = (await fetch(opts, f"SELECT BINLOG_GTID_POS('{following}', 4) AS g"))[0]["g"]
    computed = await BinlogStream(opts).position_at(file, end)
    assert computed["gtid"] == server and server


async def test_partition_truncate_of_a_captured_table_stops_the_stream(
        mysql_params: dict[str, Any], unique_name: str) -> None:
    """Item 8: ALTER TABLE ... TRUNCATE PARTITION removes rows without row events."""
    opts = options(mysql_params)
    t = unique_name
    await execute(opts, f"CREATE TABLE `{t}` (id int primary key) PARTITION BY RANGE (id) "
                        "(PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN "
                        "MAXVALUE)", f"INSERT INTO `{t}` VALUES (1), (20)")

    async def write() -> None:
        await execute(opts, f"ALTER TABLE `{t}` TRUNCATE PARTITION p0",
                      f"INSERT INTO `{t}` VALUES (2)")

    with pytest.raises(ServiceNotReady, match="TRUNCATE PARTITION"):
        await _read(MysqlCdcSource([t], options=opts, heartbeat=0.2), write,
                    lambda g: _rows(g) >= 1)


async def test_row_metadata_setting_is_read_at_connect(mysql_params: dict[str, Any]) -> None:
    """Item 8: binlog_row_metadata is checked when the stream connects (a server without
    FULL is warned about at once, not at its first table map)."""
    opts = options(mysql_params)
    stream = BinlogStream(opts)
    await stream.connect()
    stream.close()
    server = (await fetch(opts, "SELECT @@global.binlog_row_metadata AS m"))[0]["m"]
    assert stream.row_metadata == server.upper()
