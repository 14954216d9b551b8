"""``decode_chunk`` (a chunk of the replication stream in one call, framing included) decodes
exactly what the per-message decoder does, and ``read_decoded`` hands it the server's byte
stream, keeping a partial message and raising the server's error."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlsync.connectors.postgres.replication.conninfo import parse_dsn
from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder, Relation
from etlsync.connectors.postgres.replication.protocol import (
    PgServerError,
    ReplicationConnection,
    copydata,
)
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


def _chunked(msgs: list[bytes], cut: int) -> list[tuple[Any, ...]]:
    """Decoded by ``decode_chunk`` from the framed stream, given to it in two pieces cut at
    byte ``cut`` (as reads may cut it: inside a message, the rest comes with the next)."""
    dec = PgOutputDecoder()
    out: list[tuple[Any, ...]] = []
    stream = copydata(msgs)
    cut = min(cut, len(stream))
    data, i = stream[:cut], 0
    while i < len(stream):
        events, i = dec.decode_chunk(data, i)
        if not events:  # a partial message at the end: the rest of the stream arrives
            assert i < len(stream) and data is not stream
            data = stream
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


@given(st.lists(_message, max_size=30), st.lists(_message, max_size=10),
       st.integers(0, 6000))
def test_decode_chunk_matches_per_message_decoding(first: list[bytes],
                                                   second: list[bytes], cut: int) -> None:
    msgs = [_relation(1, "a", COLS_A), _relation(2, "b", COLS_B), *first,
            _relation(1, "a", COLS_A), *second]
    assert _chunked(msgs, cut) == _per_message(msgs)


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
    data = copydata([_relation(2, "b", COLS_B), BEGIN, *ins, COMMIT])
    events, i = dec.decode_chunk(data)
    # stops after a Relation message
    assert i == len(copydata([_relation(2, "b", COLS_B)])) and [e[0] for e in events] == ["R"]
    events, i = dec.decode_chunk(data, i)
    assert i == len(data)
    assert [e[0] for e in events] == ["B", "I*", "C"]
    assert events[1][2] == [(k, "v") for k in range(4)]
    # a partial message ends the chunk; a message that is not CopyData stops it too
    for tail in (copydata([ins[0]])[:-1], _frame(b"E", b"SERROR\0Mx\0\0")):
        events, i = dec.decode_chunk(copydata([BEGIN, *ins]) + tail)
        assert [e[0] for e in events] == ["B", "I*"] and len(events[1][2]) == 4
        assert i == len(copydata([BEGIN, *ins]))
    # inside a v2 stream block changes carry their (sub)transaction id
    stream = [_xlog(b"S" + struct.pack("!IB", 9, 1)), _insert(2, ("5", "w"), xid=11),
              _xlog(b"E"), _insert(2, ("6", "u"))]
    events, i = dec.decode_chunk(copydata(stream))
    assert [e[0] for e in events] == ["S", "X", "E", "I*"]
    assert events[1][1] == 11 and events[1][2][0] == "I" and events[1][2][2] == {"c0": 5,
                                                                                "c1": "w"}
    assert events[3][2] == [(6, "u")]


def test_decode_chunk_falls_back_and_names_a_bad_column() -> None:
    dec = PgOutputDecoder()
    dec.decode_chunk(copydata([_relation(1, "a", COLS_A)]))
    ok = _insert(1, ("1", "a", "2.00", "infinity", "0.5"))
    events, _ = dec.decode_chunk(copydata([ok, ok]))
    assert events[0][2][0][3] == dt.datetime.max
    # rows the compiled reader leaves to the careful path mid-run (one with 4 columns ends
    # the run; one with a binary value raises inside it): the rows before stay one run,
    # the run goes on after them
    short = _xlog(b"I" + struct.pack("!I", 1) + b"N" + _tuple(("2", "b", "1.00", None)))
    binary = _insert(1, ("3", "c", "1.00", None, None)).replace(b"t\0\0\0\1c",
                                                                 b"b\0\0\0\1c")  # c1
    data = copydata([ok, ok, short, ok, binary, ok])
    events, i = dec.decode_chunk(data)
    assert [(e[0], len(e[2])) for e in events] == [("I*", 2), ("I*", 1), ("I*", 1),
                                                   ("I*", 1), ("I*", 1)]
    assert events[1][2] == [(2, "b", Decimal("1.00"), None)]
    assert events[3][2] == [(3, b"c", Decimal("1.00"), None, None)] and i == len(data)
    bad = _insert(1, ("1", "a", "x", None, None))
    with pytest.raises(DataError, match="c2"):
        dec.decode_chunk(copydata([ok, bad, ok]))


def _conn(data: bytes) -> ReplicationConnection:
    conn = ReplicationConnection(parse_dsn("postgresql://u@localhost/db"))
    conn._buf = bytearray(data)

    async def no_more() -> None:
        raise AssertionError("read_decoded waited for data it already had")

    conn._fill = no_more  # type: ignore[method-assign]
    return conn


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _payloads(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """A decode callable returning the whole CopyData payloads as they are."""
    out = []
    while pos + 5 <= len(data) and data[pos] == 0x64:
        nxt = pos + 1 + struct.unpack_from("!i", data, pos + 1)[0]
        if nxt > len(data):
            break
        out.append(data[pos + 5:nxt])
        pos = nxt
    return out, pos


async def test_read_decoded_keeps_a_partial_message() -> None:
    payloads = [_keepalive(False), BEGIN, _insert(2, ("1", "a")), COMMIT]
    tail = _frame(b"d", COMMIT)
    conn = _conn(copydata(payloads) + tail[:7])
    assert await conn.read_decoded(_payloads) == payloads
    assert bytes(conn._buf) == tail[:7]
    # a message larger than max_bytes still comes whole
    conn = _conn(copydata([b"w" + bytes(3000), BEGIN]))
    assert await conn.read_decoded(_payloads, max_bytes=100) == [b"w" + bytes(3000)]
    assert await conn.read_decoded(_payloads, max_bytes=100) == [BEGIN]


async def test_read_decoded_raises_the_servers_error_and_copydone() -> None:
    err = _frame(b"E", b"SERROR\0C55000\0Mboom\0\0")
    conn = _conn(copydata([BEGIN]) + err)
    assert await conn.read_decoded(_payloads) == [BEGIN]
    with pytest.raises(PgServerError, match="boom"):
        await conn.read_decoded(_payloads)
    conn = _conn(_frame(b"N", b"SNOTICE\0Mhi\0\0") + copydata([BEGIN]) + _frame(b"c", b""))
    assert await conn.read_decoded(_payloads) == [BEGIN]  # a notice is skipped
    with pytest.raises(ConnectionError, match="CopyDone"):
        await conn.read_decoded(_payloads)
    assert conn.copy_done


async def test_read_decoded_refuses_a_decoder_that_takes_nothing() -> None:
    conn = _conn(copydata([BEGIN]))
    with pytest.raises(DataError, match="took no message"):
        await conn.read_decoded(lambda data, pos: ([], pos))
