"""Every common column type decoded from the binlog equals what SELECT returns."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync.connectors.mysql.binlog import BinlogStream
from etlsync.connectors.mysql.config import load_schema
from etlsync.connectors.mysql.source import _fixer
from tests.mysql.helpers import binlog_and_select, collect_changes, execute, options

pytestmark = pytest.mark.integration

COLUMNS = """
 id int primary key,
 ti tinyint, tiu tinyint unsigned, si smallint, siu smallint unsigned,
 mi mediumint, miu mediumint unsigned, i int, iu int unsigned, bi bigint, biu bigint unsigned,
 d1 decimal(10,2), d2 decimal(30,10), d3 decimal(5,0), d4 decimal(65,30), d5 decimal(4,4),
 f float, db double,
 c char(10), vc varchar(300), vlat varchar(20) character set latin1, t text, mt mediumtext,
 bl blob, vb varbinary(20), bn binary(4),
 dd date, tm time, tm3 time(3), tm6 time(6), dtm datetime, dtm6 datetime(6),
 ts timestamp null default null, ts4 timestamp(4) null default null,
 y year, e enum('a','b','c d'), s set('x','y','z'), bt bit(1), bt64 bit(64), j json,
 u8 varchar(20) character set utf8mb4
"""

ROWS = [
    # minimum / negative boundaries
    "(1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,"
    " -99999999.99, -12345678901234567890.0123456789, -99999,"
    " -12345678901234567890123456789012345.123456789012345678901234567890, -0.9999,"
    " -3.40282e38, -1.7976931348623157e308,"
    " '', '', '', '', '', '', '', '', '1000-01-01', '-838:59:59', '-838:59:58.999',"
    " '-00:00:00.000001', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000000',"
    " '1970-01-01 00:00:01', '1970-01-01 00:00:01.0001', 1901, '', '', b'0', 0, '[]', '')",
    # maximum boundaries
    "(2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,"
    " 9223372036854775807, 18446744073709551615, 99999999.99,"
    " 99999999999999999999.9999999999, 99999,"
    " 99999999999999999999999999999999999.999999999999999999999999999999, 0.9999,"
    " 3.40282e38, 1.7976931348623157e308, 'abcdefghij', REPEAT('v', 300), 'àéîõü',"
    " REPEAT('t', 1000), REPEAT('m', 70000), UNHEX('00FF10'), UNHEX('DEADBEEF00'),"
    " UNHEX('0102'), '9999-12-31', '838:59:59', '838:59:58.999', '12:34:56.789012',"
    " '9999-12-31 23:59:59', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07',"
    " '2038-01-19 03:14:07.9999', 2155, 'c d', 'x,y,z', b'1',"
    " b'1111111111111111111111111111111111111111111111111111111111111111',"
    " '{\"k\": [1, 2.5, \"s\", null, true]}', '😀 ok')",
    # all NULL
    "(3" + ", NULL" * 40 + ")",
    # ordinary mixed values, fractional seconds, zero dates
    "(4, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -0.01, 0.0000000001, 0, -0.000000000000000000000000000001,"
    " 0.0001, 3.14, 2.718281828459045, 'pad  ', 'x', 'ß', 'line\\nbreak\\ttab', 'm',"
    " '', '', 'ab', '0000-00-00', '-00:00:01', '00:00:00.5', '-01:02:03.000004',"
    " '0000-00-00 00:00:00', '2024-02-29 12:00:00.000001', NULL, '2024-02-29 12:00:00.5',"
    " 0, 'a', '', b'0', 5, '\"text\"', 'naïve')",
]


async def _decoded_vs_selected(opts: Any, table: str, inserts: list[str]) -> tuple[list[Any], list[Any]]:
    decoded, selected = await binlog_and_select(opts, table, inserts)
    from etlsync.connectors.mysql.config import connect

    conn = await connect(opts)
    try:
        schema = await load_schema(conn, opts.database, table)
    finally:
        conn.close()
    assert schema is not None
    fix = _fixer(schema)
    if fix is not None:
        fix(selected)
    return decoded, selected


async def test_every_type_matches_select(mysql_params: dict[str, Any], unique_name: str) -> None:
    opts = options(mysql_params)
    await execute(opts, f"CREATE TABLE `{unique_name}` ({COLUMNS})")
    decoded, selected = await _decoded_vs_selected(
        opts, unique_name, [f"INSERT INTO `{unique_name}` VALUES {r}" for r in ROWS])
    assert len(decoded) == len(ROWS)
    for got, want in zip(decoded, selected, strict=True):
        # SELECT gives bytes for BIT and strings for zero dates; the fixer maps them
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == want[k], (want["id"], k, got[k], want[k])
    # spot checks on the exact Python values
    mx = decoded[1]
    assert mx["biu"] == 18446744073709551615 and mx["iu"] == 4294967295
    assert mx["d4"] == Decimal("99999999999999999999999999999999999.999999999999999999999999999999")
    assert mx["ts4"] == dt.datetime(2038, 1, 19, 3, 14, 7, 999900, tzinfo=dt.UTC)
    assert decoded[0]["tm3"] == -dt.timedelta(hours=838, minutes=59, seconds=58, milliseconds=999)
    assert decoded[0]["tm6"] == -dt.timedelta(microseconds=1)
    assert decoded[2] == {"id": 3, **{k: None for k in decoded[2] if k != "id"}}
    assert decoded[3]["dd"] is None and decoded[3]["dtm"] is None  # zero dates
    assert mx["bn"] == b"\x01\x02\x00\x00" and mx["u8"] == "😀 ok" and mx["vlat"] == "àéîõü"


async def test_update_and_delete_images(mysql_params: dict[str, Any], unique_name: str) -> None:
    opts = options(mysql_params)
    await execute(opts, f"CREATE TABLE `{unique_name}` (id int primary key, v varchar(10), n int)")
    stream = BinlogStream(opts, table_filter=lambda d, t: t == unique_name)
    await stream.connect()
    try:
        await execute(opts, f"INSERT INTO `{unique_name}` VALUES (1, 'a', NULL), (2, 'b', 2)",
                      f"UPDATE `{unique_name}` SET v = 'c', n = 7 WHERE id = 1",
                      f"DELETE FROM `{unique_name}` WHERE id = 2")
        events = await collect_changes(stream, 4)
    finally:
        stream.close()
    assert [(e.op, len(e.rows)) for e in events] == [("insert", 2), ("update", 1), ("delete", 1)]
    assert events[1].before == [{"id": 1, "v": "a", "n": None}]
    assert events[1].rows == [{"id": 1, "v": "c", "n": 7}]
    assert events[2].rows == [{"id": 2, "v": "b", "n": 2}]
    assert events[0].table.primary_key == ("id",)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    decimals=st.lists(st.decimals(min_value=Decimal("-1e19"), max_value=Decimal("1e19"),
                                  places=10, allow_nan=False, allow_infinity=False),
                      min_size=1, max_size=20),
    micros=st.lists(st.integers(min_value=-838 * 3600 * 10**6 + 1, max_value=838 * 3600 * 10**6 - 1),
                    min_size=1, max_size=20),
)
def test_decimal_and_time_roundtrip(mysql_params: dict[str, Any], decimals: list[Decimal],
                                    micros: list[int]) -> None:
    """Random DECIMAL(30,10) and TIME(6) values: the binlog decodes what the server stored."""
    import uuid

    opts = options(mysql_params)
    table = f"t_{uuid.uuid4().hex[:10]}"

    def lit(us: int) -> str:
        sign, us = ("-" if us < 0 else ""), abs(us)
        s, frac = divmod(us, 10**6)
        return f"'{sign}{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:06d}'"

    n = max(len(decimals), len(micros))
    values = ",".join(
        f"({i}, {decimals[i] if i < len(decimals) else 'NULL'}, "
        f"{lit(micros[i]) if i < len(micros) else 'NULL'})" for i in range(n))

    async def run() -> tuple[list[Any], list[Any]]:
        await execute(opts, f"CREATE TABLE `{table}` (id int primary key, d decimal(30,10), t time(6))")
        try:
            return await _decoded_vs_selected(opts, table, [f"INSERT INTO `{table}` VALUES {values}"])
        finally:
            await execute(opts, f"DROP TABLE `{table}`")

    decoded, selected = asyncio.run(run())
    assert decoded == selected
    for i, d in enumerate(decimals):
        assert decoded[i]["d"] == d


@pytest.mark.parametrize("ddl", ["ADD COLUMN x int AFTER id", "DROP COLUMN v"])
async def test_names_follow_ddl_with_full_metadata(mysql_params: dict[str, Any], unique_name: str,
                                                   ddl: str) -> None:
    """With binlog_row_metadata=FULL, events before and after a DDL decode with the names
    they were written with."""
    opts = options(mysql_params)
    await execute(opts, f"CREATE TABLE `{unique_name}` (id int primary key, v varchar(10), w int)")
    stream = BinlogStream(opts, table_filter=lambda d, t: t == unique_name)
    await stream.connect()
    try:
        await execute(opts, f"INSERT INTO `{unique_name}` (id, v, w) VALUES (1, 'a', 10)",
                      f"ALTER TABLE `{unique_name}` {ddl}",
                      f"INSERT INTO `{unique_name}` (id, w) VALUES (2, 20)")
        events = await collect_changes(stream, 2)
    finally:
        stream.close()
    assert events[0].rows == [{"id": 1, "v": "a", "w": 10}]
    after = events[1].rows[0]
    assert after["id"] == 2 and after["w"] == 20
    assert ("x" in after) == ddl.startswith("ADD") and ("v" in after) == ddl.startswith("ADD")
