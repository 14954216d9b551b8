"""``decode_chunk`` (a chunk of CopyData payloads in one call) decodes exactly what the
per-message decoder does, and ``read_chunk`` frames the server's byte stream."""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlsync.connectors.postgres.replication.conninfo import parse_dsn
from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder, Relation
from etlsync.connectors.postgres.replication.protocol import PgServerError, ReplicationConnection
from etlsync.core.errors import DataError

# relation 1: (oid, text form strategy) per column; relation 2: int, text
_TS = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))
COLS_A = [
    (23, st.integers(-2**31, 2**31 - 1).map(str)),
    (25, st.text(st.characters(exclude_categories=["Cs"]), max_size=12)),
    (1700, st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str)),
    (1184, st.one_of(st.sampled_from(["infinity", "-infinity"]),
                     _TS.map(lambda t: t.isoformat(" ") + "+00"))),
    (701, st.floats(allow_nan=False, allow_infinity=False).map(repr)),
]
COLS_B = [(20, st.integers(0, 2**40).map(str)), (25, st.text(max_size=5))]


def _xlog(body: bytes) -> bytes:
    return b"w" + struct.pack("!QQq", 1, 2, 3) + body


def _relation(oid: int, name: str, cols: list[tuple[int, Any]]) -> bytes:
    body = b"R" + struct.pack("!I", oid) + b"public\0" + name.encode() + b"\0d"
    body += struct.pack("!h", len(cols))
    for i, (typ, _) in enumerate(cols):
        body += bytes([1 if i == 0 else 0]) + f"c{i}".encode() + b"\0"
        body += struct.pack("!Ii", typ, -1)
    return _xlog(body)


def _tuple(values: tuple[str | None, ...]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        else:
            raw = v.encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def _insert(oid: int, values: tuple[str | None, ...], xid: int | None = None) -> bytes:
    prefix = b"" if xid is None else struct.pack("!I", xid)
    return _xlog(b"I" + prefix + struct.pack("!I", oid) + b"N" + _tuple(values))


def _update(oid: int, values: tuple[str | None, ...]) -> bytes:
    return _xlog(b"U" + struct.pack("!I", oid) + b"N" + _tuple(values))


BEGIN = _xlog(b"B" + struct.pack("!QqI", 100, 0, 7))
COMMIT = _xlog(b"C" + struct.pack("!BQQq", 0, 100, 120, 0))


def _keepalive(reply: bool) -> bytes:
    return b"k" + struct.pack("!QqB", 99, 0, reply)


def _norm(ev: tuple[Any, ...]) -> tuple[Any, ...]:
    """Relations by oid (two decoders hold equal but distinct Relation objects)."""
    return tuple(x.oid if isinstance(x, Relation) else x for x in ev)


def _per_message(msgs: list[bytes]) -> list[tuple[Any, ...]]:
    dec = PgOutputDecoder()
    out = []
    for m in msgs:
        if m[0] == 0x77:
            out.append(_norm(dec.decode_record(m, 25)))
        else:
            out.append(("k", 99, bool(m[17])))
    return out


def _chunked(msgs: list[bytes]) -> list[tuple[Any, ...]]:
    dec = PgOutputDecoder()
    out: list[tuple[Any, ...]] = []
    i = 0
    while i < len(msgs):
        events, i = dec.decode_chunk(msgs, i)
        for ev in events:
            if ev[0] == "I*":
                out += [("I", ev[1].oid, r) for r in ev[2]]
            else:
                out.append(_norm(ev))
    return out


def _opt(s: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), s)


_message = st.one_of(
    st.tuples(*(_opt(s) for _, s in COLS_A)).map(lambda v: _insert(1, v)),
    st.tuples(*(_opt(s) for _, s in COLS_A)).map(lambda v: _insert(1, v)),
    st.tuples(*(_opt(s) for _, s in COLS_B)).map(lambda v: _insert(2, v)),
    st.tuples(*(_opt(s) for _, s in COLS_B)).map(lambda v: _update(2, v)),
    st.sampled_from([BEGIN, COMMIT, _keepalive(True), _keepalive(False)]),
)


@given(st.lists(_message, max_size=30), st.lists(_message, max_size=10))
def test_decode_chunk_matches_per_message_decoding(first: list[bytes],
                                                   second: list[bytes]) -> None:
    msgs = [_relation(1, "a", COLS_A), _relation(2, "b", COLS_B), *first,
            _relation(1, "a", COLS_A), *second]
    assert _chunked(msgs) == _per_message(msgs)


def test_insert_record_matches_the_dict_decoder() -> None:
    dec = PgOutputDecoder()
    dec.decode(_relation(1, "a", COLS_A), 25)
    msg = _insert(1, ("7", "x", "1.50", "2024-05-01 10:00:00.5+00", None))
    as_dict = dec.decode(msg, 25)
    as_record = dec.decode_record(msg, 25)
    assert as_record[2] == tuple(as_dict[2].values())
    assert as_dict[2]["c3"] == dt.datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=dt.UTC)


def test_decode_chunk_runs_stops_and_stream_blocks() -> None:
    dec = PgOutputDecoder()
    ins = [_insert(2, (str(i), "v")) for i in range(4)]
    msgs = [_relation(2, "b", COLS_B), BEGIN, *ins, COMMIT]
    events, i = dec.decode_chunk(msgs)
    assert i == 1 and [e[0] for e in events] == ["R"]  # stops after a Relation message
    events, i = dec.decode_chunk(msgs, i)
    assert i == len(msgs)
    assert [e[0] for e in events] == ["B", "I*", "C"]
    assert events[1][2] == [(k, "v") for k in range(4)]
    # inside a v2 stream block changes carry their (sub)transaction id
    stream = [_xlog(b"S" + struct.pack("!IB", 9, 1)), _insert(2, ("5", "w"), xid=11),
              _xlog(b"E"), _insert(2, ("6", "u"))]
    events, i = dec.decode_chunk(stream)
    assert [e[0] for e in events] == ["S", "X", "E", "I*"]
    assert events[1][1] == 11 and events[1][2][0] == "I" and events[1][2][2] == {"c0": 5,
                                                                                "c1": "w"}
    assert events[3][2] == [(6, "u")]


def test_decode_chunk_falls_back_and_names_a_bad_column() -> None:
    dec = PgOutputDecoder()
    dec.decode_chunk([_relation(1, "a", COLS_A)])
    ok = _insert(1, ("1", "a", "2.00", "infinity", "0.5"))
    events, _ = dec.decode_chunk([ok, ok])
    assert events[0][2][0][3] == dt.datetime.max
    bad = _insert(1, ("1", "a", "x", None, None))
    with pytest.raises(DataError, match="c2"):
        dec.decode_chunk([ok, bad, ok])


def _conn(data: bytes) -> ReplicationConnection:
    conn = ReplicationConnection(parse_dsn("postgresql://u@localhost/db"))
    conn._buf = bytearray(data)

    async def no_more() -> None:
        raise AssertionError("read_chunk waited for data it already had")

    conn._fill = no_more  # type: ignore[method-assign]
    return conn


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


async def test_read_chunk_frames_copydata_and_keeps_a_partial_message() -> None:
    payloads = [_keepalive(False), BEGIN, _insert(2, ("1", "a")), COMMIT]
    data = b"".join(_frame(b"d", p) for p in payloads)
    tail = _frame(b"d", COMMIT)
    conn = _conn(data + tail[:7])
    assert await conn.read_chunk() == payloads
    assert bytes(conn._buf) == tail[:7]
    # a message larger than max_bytes still comes whole
    big = _frame(b"d", b"w" + bytes(3000))
    conn = _conn(big + _frame(b"d", BEGIN))
    assert await conn.read_chunk(max_bytes=100) == [b"w" + bytes(3000)]
    assert await conn.read_chunk(max_bytes=100) == [BEGIN]


async def test_read_chunk_raises_the_servers_error() -> None:
    err = _frame(b"E", b"SERROR\0C55000\0Mboom\0\0")
    conn = _conn(_frame(b"d", BEGIN) + err)
    assert await conn.read_chunk() == [BEGIN]
    with pytest.raises(PgServerError, match="boom"):
        await conn.read_chunk()
