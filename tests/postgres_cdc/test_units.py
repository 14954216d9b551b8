"""Pure-Python pieces of the replication client: LSNs, SCRAM, DSNs, text decoders."""

from __future__ import annotations

import datetime as dt
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlsync.connectors.postgres.replication.conninfo import parse_dsn
from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder
from etlsync.connectors.postgres.replication.protocol import Scram, format_lsn, parse_lsn
from etlsync.connectors.postgres.replication.types import BUILTIN, json_value, parse_array
from etlsync.connectors.postgres.types import UNCHANGED
from etlsync.core.errors import ConfigError, DataError
from tests.postgres_cdc import reference


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_text_round_trips(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


def test_scram_matches_rfc7677_example() -> None:
    scram = Scram("pencil", nonce="rOprNGfwEbeRWgbNEkqO", user="user")
    assert scram.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = scram.client_final(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    scram.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(ConfigError, match="signature"):
        scram.verify(b"v=AAAA")


def test_dsn_uri_keywords_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "from-env")
    p = parse_dsn("postgresql://bob@db.example:6543/shop?sslmode=require")
    assert (p.host, p.port, p.user, p.database, p.sslmode) == (
        "db.example", 6543, "bob", "shop", "require")
    assert p.password == "from-env"
    assert "from-env" not in repr(p)
    q = parse_dsn("host=h port=1 user=u dbname=d password=secret")
    assert (q.host, q.port, q.database, q.password) == ("h", 1, "d", "secret")
    with pytest.raises(ConfigError, match="sslmode"):
        parse_dsn("postgresql://h/d?sslmode=bogus")
    assert parse_dsn("postgresql://h/d?sslmode=disable").ssl_context() is None


def _array_text(value: list[object], delim: str = ",") -> str:
    parts = []
    for v in value:
        if isinstance(v, list):
            parts.append(_array_text(v, delim))
        elif v is None:
            parts.append("NULL")
        else:
            s = str(v)
            parts.append('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + delim.join(parts) + "}"


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                       blacklist_characters="\x00"), max_size=6)


@given(st.lists(st.one_of(st.none(), _TEXT), max_size=6))
def test_array_text_parses_back(items: list[str | None]) -> None:
    assert parse_array(_array_text(items)) == items
    nested = [items, items]
    assert parse_array(_array_text(nested)) == nested


def test_scalar_decoders() -> None:
    assert BUILTIN[1186][0](b"P1Y2M3DT4H5M6.5S") == dt.timedelta(
        days=365 + 2 * 30 + 3, hours=4, minutes=5, seconds=6.5)
    assert BUILTIN[1186][0](b"PT-1.000001S") == dt.timedelta(microseconds=-1_000_001)
    assert BUILTIN[17][0](b"\\x00ff10") == b"\x00\xff\x10"
    assert BUILTIN[1082][0](b"infinity") == dt.date.max
    assert BUILTIN[1007][0](b"[0:1]={1,NULL}") == [1, None]
    assert BUILTIN[16][0](b"t") is True


def _relation_msg(oid: int, cols: list[tuple[int, str, int]]) -> bytes:
    body = b"R" + struct.pack("!I", oid) + b"public\0t\0d" + struct.pack("!h", len(cols))
    for flags, name, typ in cols:
        body += bytes([flags]) + name.encode() + b"\0" + struct.pack("!Ii", typ, -1)
    return body


def _tuple(values: list[bytes | str | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v == "u":
            out += b"u"
        else:
            assert isinstance(v, bytes)
            out += b"t" + struct.pack("!i", len(v)) + v
    return out


def test_decoder_handles_toast_keys_and_bad_values() -> None:
    d = PgOutputDecoder()
    kind, rel = d.decode(_relation_msg(7, [(1, "id", 23), (0, "doc", 25)]))
    assert kind == "R" and rel.schema.primary_key == ("id",)
    ev = d.decode(b"U" + struct.pack("!I", 7) + b"K" + _tuple([b"1", None])
                  + b"N" + _tuple([b"2", "u"]))
    assert ev[0] == "U" and ev[2] == {"id": 2, "doc": UNCHANGED} and ev[3] == {"id": 1}
    with pytest.raises(DataError, match="'id'"):
        d.decode(b"I" + struct.pack("!I", 7) + b"N" + _tuple([b"x", None]))


_NUMBER = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.tuples(st.integers(-10**20, 10**20), st.integers(-400, 400)).map(lambda t: f"{t[0]}e{t[1]}"),
)


@given(st.lists(_NUMBER, max_size=8), st.text(max_size=20))
def test_json_numbers_decode_exactly(numbers: list[str], text: str) -> None:
    """Every JSON number as the documented rule gives it (the standard library with the
    rule as reference): int, float where its shortest text is the number, else Decimal."""
    doc = json.dumps({"s": text}).rstrip("}") + ', "n": [' + ", ".join(numbers) + "]}"
    assert reference.same(json_value(doc.encode()), reference.json_value(doc))


@given(st.lists(st.one_of(st.none(), _TEXT), max_size=6), st.sampled_from([",", ";"]))
def test_array_text_with_the_types_delimiter_parses_back(items: list[str | None],
                                                         delim: str) -> None:
    assert parse_array(_array_text(items, delim), delim) == items
    nested = [items, items]
    assert parse_array(_array_text(nested, delim), delim) == nested
