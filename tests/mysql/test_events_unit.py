"""Decoder units with hand-built event bytes: v2 row events (MySQL 8), degraded mode without
row metadata, MySQL binary JSON, GTID positions."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlsync.connectors.mysql import events as ev
from etlsync.connectors.mysql import values as v
from etlsync.connectors.mysql.binlog import BinlogStream
from etlsync.connectors.mysql.config import MysqlOptions
from etlsync.connectors.mysql.gtid import MariaGtidPos, MysqlGtidSet
from etlsync.core.errors import SchemaError


def _lenenc_str(s: bytes) -> bytes:
    return bytes([len(s)]) + s


def table_map(types: list[int], meta: bytes, names: list[str] | None,
              unsigned: list[bool] | None = None, pk: list[int] | None = None) -> bytes:
    body = (42).to_bytes(6, "little") + b"\x01\x00"
    body += _lenenc_str(b"db") + b"\0" + _lenenc_str(b"tbl") + b"\0"
    body += bytes([len(types)]) + bytes(types) + bytes([len(meta)]) + meta
    body += bytes([(1 << len(types)) - 1])  # all nullable
    if unsigned is not None:
        bits = 0
        for i, flag in enumerate(unsigned):
            if flag:
                bits |= 0x80 >> i
        body += b"\x01\x01" + bytes([bits])
    if names is not None:
        tlv = b"".join(_lenenc_str(n.encode()) for n in names)
        body += b"\x04" + bytes([len(tlv)]) + tlv
    if pk is not None:
        body += b"\x08" + bytes([len(pk)]) + bytes(pk)
    return body


TYPES = [v.LONG, v.VARCHAR, v.LONGLONG]
META = struct.pack("<H", 40)


def row_image(i: int, s: str | None, big: int) -> bytes:
    nulls = 0 if s is not None else 0b010
    out = bytes([nulls]) + struct.pack("<i", i)
    if s is not None:
        out += _lenenc_str(s.encode())
    return out + struct.pack("<Q", big)


def rows_v2(rows: bytes, update: bool = False) -> bytes:
    head = (42).to_bytes(6, "little") + b"\x00\x00" + b"\x02\x00"  # extra data: length only
    return head + b"\x03" + b"\x07" + (b"\x07" if update else b"") + rows


def test_v2_row_events_decode_with_metadata() -> None:
    tm = ev.TableMap(table_map(TYPES, META, ["id", "name", "big"], [False, True], [0]), 0)
    assert tm.schema == "db" and tm.table == "tbl" and tm.primary_key == ("id",)
    payload = rows_v2(row_image(1, "x", 2**64 - 1) + row_image(-2, None, 5))
    rows, before = ev.decode_rows(tm, ev.WRITE_V2, payload, 8, len(payload))
    assert before is None
    assert rows == [{"id": 1, "name": "x", "big": 2**64 - 1}, {"id": -2, "name": None, "big": 5}]
    upd = rows_v2(row_image(1, "x", 1) + row_image(1, "y", 2), update=True)
    rows, before = ev.decode_rows(tm, ev.UPDATE_V2, upd, 8, len(upd))
    assert before == [{"id": 1, "name": "x", "big": 1}]
    assert rows == [{"id": 1, "name": "y", "big": 2}]
    dele = rows_v2(row_image(7, "z", 0))
    rows, before = ev.decode_rows(tm, ev.DELETE_V2, dele, 8, len(dele))
    assert rows == [{"id": 7, "name": "z", "big": 0}] and before is None


def test_degraded_mode_takes_names_from_schema_and_refuses_mismatch() -> None:
    raw = table_map(TYPES, META, None)
    tm = ev.TableMap(raw, 0)
    assert not tm.has_metadata
    cols = [ev.ColumnInfo("id", "int", primary=True), ev.ColumnInfo("name", "varchar"),
            ev.ColumnInfo("big", "bigint", unsigned=True)]
    tm.apply_columns(cols)
    payload = rows_v2(row_image(3, "n", 2**63))
    rows, _ = ev.decode_rows(tm, ev.WRITE_V2, payload, 8, len(payload))
    assert rows == [{"id": 3, "name": "n", "big": 2**63}] and tm.primary_key == ("id",)
    with pytest.raises(SchemaError, match="has 3 columns but the table has 4"):
        ev.TableMap(raw, 0).apply_columns([*cols, ev.ColumnInfo("x", "int")])
    with pytest.raises(SchemaError, match="logged as type"):
        ev.TableMap(raw, 0).apply_columns(
            [cols[0], ev.ColumnInfo("inserted", "int"), cols[1]])


def test_stream_uses_schema_loader_without_metadata() -> None:
    calls: list[tuple[str, str]] = []

    async def loader(schema: str, table: str) -> list[ev.ColumnInfo]:
        calls.append((schema, table))
        return [ev.ColumnInfo("id", "int"), ev.ColumnInfo("name", "varchar"),
                ev.ColumnInfo("big", "bigint")]

    stream = BinlogStream(MysqlOptions(), schema_loader=loader)
    tables: dict[int, Any] = {}
    # event header is 19 bytes after the OK byte: _table_map gets the body offset
    packet = b"\0" * 20 + table_map(TYPES, META, None)
    asyncio.run(stream._table_map(packet, 20, tables))
    asyncio.run(stream._table_map(packet, 20, tables))
    assert tables[42].names == ["id", "name", "big"]
    assert calls == [("db", "tbl")]  # cached until a DDL


def test_mysql_binary_json() -> None:
    arr = struct.pack("<HH", 2, 12) + bytes([4]) + struct.pack("<H", 1) + bytes([12]) + \
        struct.pack("<H", 10) + b"\x01x"
    obj = struct.pack("<HH", 2, 32) + struct.pack("<HH", 18, 1) + struct.pack("<HH", 19, 1) + \
        bytes([5]) + struct.pack("<H", 1) + bytes([2]) + struct.pack("<H", 20) + b"ab" + arr
    assert v.decode_json(b"\x00" + obj) == {"a": 1, "b": [True, "x"]}
    assert v.decode_json(b"\x0b" + struct.pack("<d", 2.5)) == 2.5
    assert v.decode_json(b"\x09" + struct.pack("<q", -(2**40))) == -(2**40)
    assert v.decode_json(b"\x04\x00") is None
    assert v.decode_json(b"\x0c\x03abc") == "abc"
    read = v.json_reader(2)
    doc = b"\x00" + obj
    assert read(struct.pack("<H", len(doc)) + doc, 0) == ('{"a": 1, "b": [true, "x"]}', 2 + len(doc))


@given(st.dictionaries(st.integers(0, 2**32 - 1),
                       st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)),
                       max_size=5))
def test_mariadb_gtid_roundtrip(domains: dict[int, tuple[int, int]]) -> None:
    pos = MariaGtidPos(domains)
    assert MariaGtidPos.parse(str(pos)).domains == domains


@given(st.lists(st.integers(1, 200), max_size=60))
def test_mysql_gtid_set_add_matches_parse(gnos: list[int]) -> None:
    sid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    s = MysqlGtidSet()
    for g in gnos:
        s.add(sid, g)
    again = MysqlGtidSet.parse(str(s))
    assert again.sets == s.sets
    covered = {g for a, b in s.sets.get(sid, []) for g in range(a, b)}
    assert covered == set(gnos)
    encoded = s.encode()
    assert struct.unpack_from("<Q", encoded)[0] == (1 if gnos else 0)
