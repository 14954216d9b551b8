"""Text-format value decoders by type OID, array parsing, and the logical type of each type.

The walsender session runs with ``DateStyle=ISO``, ``TimeZone=UTC``, ``IntervalStyle=iso_8601``
and ``extra_float_digits=3`` (set in the startup packet; the snapshot session uses the same),
so the text forms parsed here are fixed. Values match what asyncpg returns for the same types
(``interval`` as a ``timedelta`` with a year counted as 365 days and a month as 30,
``infinity`` dates as ``date.max``), except ``json``/``jsonb`` (parsed into Python values on
both paths, numbers exactly: see :func:`json_value`) and ``timetz`` (the offset keeps its
seconds, which asyncpg drops).
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from etlsync.core.schema import ColumnType

Decoder = Callable[[bytes], Any]
TypeEntry = tuple[str, str, int, str]
"""A non-builtin type from ``pg_type``: ``(name, typtype, element or base type oid, array
delimiter)``."""
Catalog = dict[int, TypeEntry]


def _text(b: bytes) -> str:
    return b.decode()


def _bool(b: bytes) -> bool:
    return b == b"t"


def _numeric(b: bytes) -> Decimal:
    return Decimal(b.decode())


def _bytea(b: bytes) -> bytes:
    if b[:2] == b"\\x":
        return bytes.fromhex(b[2:].decode("ascii"))
    return _bytea_escape(b)


def _bytea_escape(b: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(b):
        c = b[i]
        if c == 0x5C and b[i + 1:i + 2] == b"\\":
            out.append(0x5C)
            i += 2
        elif c == 0x5C:
            out.append(int(b[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(c)
            i += 1
    return bytes(out)


def _date(b: bytes) -> dt.date:
    if b == b"infinity":
        return dt.date.max
    if b == b"-infinity":
        return dt.date.min
    return dt.date.fromisoformat(b.decode())


def _time(b: bytes) -> dt.time:
    return dt.time.fromisoformat(b.decode())


def _timestamp(b: bytes) -> dt.datetime:
    if b == b"infinity":
        return dt.datetime.max
    if b == b"-infinity":
        return dt.datetime.min
    return dt.datetime.fromisoformat(b.decode())


def _timestamptz(b: bytes) -> dt.datetime:
    if b == b"infinity":  # naive, as asyncpg returns (and encodes back to infinity)
        return dt.datetime.max
    if b == b"-infinity":
        return dt.datetime.min
    return dt.datetime.fromisoformat(b.decode())


_INTERVAL = re.compile(
    r"P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?[\d.]+)S)?)?$")


def _interval(b: bytes) -> dt.timedelta:
    m = _INTERVAL.match(b.decode())
    if m is None:
        raise ValueError(f"not an ISO 8601 interval: {b.decode()!r}")
    y, mo, d, h, mi, s = (g or "0" for g in m.groups())
    months = int(y) * 12 + int(mo)
    years, months = (months // 12, months % 12) if months >= 0 else (
        -(-months // 12), -(-months % 12))
    micros = round(Decimal(s) * 1_000_000) + (int(h) * 3600 + int(mi) * 60) * 1_000_000
    return dt.timedelta(days=years * 365 + months * 30 + int(d), microseconds=micros)


_F32 = struct.Struct("!f")


def _float4(b: bytes) -> float:
    """A ``real`` as the float32 value asyncpg returns (not the shortest decimal text)."""
    return float(_F32.unpack(_F32.pack(float(b)))[0])


def _uuid(b: bytes) -> uuid.UUID:
    return uuid.UUID(b.decode())


def exact_number(text: str) -> float | Decimal:
    """A JSON number with a fraction or exponent: a ``float`` when the float's shortest
    text denotes the same number, else the exact ``Decimal`` (beyond float range, more
    digits than a float holds, below its smallest value)."""
    f = float(text)
    if f - f == 0 and Decimal(repr(f)) == Decimal(text):
        return f
    return Decimal(text)


_json_fast = msgspec.json.decode
_json_exact = msgspec.json.Decoder(float_hook=exact_number).decode
_CLASSES = bytes.maketrans(b"0123456789.eE+-", b"\x01" * 11 + b"\x02\x02\x03\x03")
"""Digits and points to 1, exponent marks to 2, signs to 3 (raw JSON has no such bytes)."""
_SIXTEEN_DIGITS = b"\x01" * 16
_TINY_EXPONENT = b"\x02\x03\x01\x01\x01"


def json_value(b: bytes) -> Any:
    """A ``json``/``jsonb`` text as Python values, every number exactly: integers as
    ``int``, others as ``float`` where exact, else ``Decimal`` (:func:`exact_number`).

    The C decoder's floats are exact unless a number has 16 or more digits, a negative
    exponent of three digits (below the normal range) or overflows (it raises): only
    such texts take the decoder that checks each float."""
    classes = b.translate(_CLASSES)
    if _SIXTEEN_DIGITS in classes or _TINY_EXPONENT in classes:
        return _json_exact(b)
    try:
        return _json_fast(b)
    except msgspec.ValidationError:  # a number beyond the float range
        return _json_exact(b)


def parse_array(text: str, delim: str = ",") -> list[Any]:
    """Parse an array's text form into nested lists of element strings (``None`` for NULL);
    ``delim`` is the element type's ``typdelim`` (``;`` for ``box``)."""
    if text.startswith("["):  # explicit bounds: [0:2]={...}
        text = text[text.index("=") + 1:]
    pos = 0
    n = len(text)

    def parse() -> list[Any]:
        nonlocal pos
        assert text[pos] == "{"
        pos += 1
        items: list[Any] = []
        if text[pos] == "}":
            pos += 1
            return items
        while True:
            c = text[pos]
            if c == "{":
                items.append(parse())
            elif c == '"':
                pos += 1
                chars: list[str] = []
                while text[pos] != '"':
                    if text[pos] == "\\":
                        pos += 1
                    chars.append(text[pos])
                    pos += 1
                pos += 1
                items.append("".join(chars))
            else:
                start = pos
                while pos < n and text[pos] != delim and text[pos] != "}":
                    pos += 1
                raw = text[start:pos].strip()
                items.append(None if raw == "NULL" else raw)
            if text[pos] == delim:
                pos += 1
                continue
            pos += 1  # '}'
            return items

    return parse()


def array_decoder(element: Decoder, delim: str = ",") -> Decoder:
    """A decoder for arrays whose elements ``element`` decodes, separated by ``delim``."""

    def convert(items: list[Any]) -> list[Any]:
        return [None if v is None else convert(v) if isinstance(v, list)
                else element(v.encode()) for v in items]

    def decode(b: bytes) -> list[Any]:
        return convert(parse_array(b.decode(), delim))

    return decode


# oid -> (decoder, logical type, native name)
BUILTIN: dict[int, tuple[Decoder, ColumnType, str]] = {
    16: (_bool, ColumnType.BOOLEAN, "boolean"),
    17: (_bytea, ColumnType.BYTES, "bytea"),
    18: (_text, ColumnType.STRING, "char"),
    19: (_text, ColumnType.STRING, "name"),
    20: (int, ColumnType.INTEGER, "bigint"),
    21: (int, ColumnType.INTEGER, "smallint"),
    23: (int, ColumnType.INTEGER, "integer"),
    25: (_text, ColumnType.STRING, "text"),
    26: (int, ColumnType.INTEGER, "oid"),
    114: (json_value, ColumnType.JSON, "json"),
    700: (_float4, ColumnType.FLOAT, "real"),
    701: (float, ColumnType.FLOAT, "double precision"),
    1042: (_text, ColumnType.STRING, "character"),
    1043: (_text, ColumnType.STRING, "character varying"),
    1082: (_date, ColumnType.DATE, "date"),
    1083: (_time, ColumnType.TIME, "time without time zone"),
    1114: (_timestamp, ColumnType.DATETIME, "timestamp without time zone"),
    1184: (_timestamptz, ColumnType.TIMESTAMP, "timestamp with time zone"),
    1186: (_interval, ColumnType.INTERVAL, "interval"),
    1266: (_time, ColumnType.TIME, "time with time zone"),
    1700: (_numeric, ColumnType.DECIMAL, "numeric"),
    2950: (_uuid, ColumnType.UUID, "uuid"),
    3802: (json_value, ColumnType.JSON, "jsonb"),
}
ARRAYS: dict[int, int] = {
    1000: 16, 1001: 17, 1002: 18, 1003: 19, 1016: 20, 1005: 21, 1007: 23, 1009: 25, 1028: 26,
    199: 114, 1021: 700, 1022: 701, 1014: 1042, 1015: 1043, 1182: 1082, 1183: 1083, 1115: 1114,
    1185: 1184, 1187: 1186, 1270: 1266, 1231: 1700, 2951: 2950, 3807: 3802,
}
for _arr, _elem in ARRAYS.items():
    _dec, _lt, _name = BUILTIN[_elem]
    BUILTIN[_arr] = (array_decoder(_dec), ColumnType.JSON, _name + "[]")

SNAPSHOT_NATIVE = frozenset(BUILTIN) - {1266, 1270, 18, 1002, 1186, 1187}
"""Builtin types asyncpg's binary decoding gives exactly as :data:`BUILTIN` decodes their
text; not ``timetz`` (asyncpg drops the seconds of the offset), ``"char"`` (asyncpg gives
bytes; its output text is a string, a byte above 127 as an octal escape) nor ``interval``
(asyncpg 0.29-0.30 computes the days in 32 bits: beyond about 5.9 million years it
returns a wrong value instead of failing)."""


def type_info(oid: int, catalog: Catalog) -> tuple[Decoder, ColumnType, str]:
    """Decoder, logical type and native name for ``oid``.

    :param catalog: :data:`TypeEntry` by oid for non-builtin types, read from ``pg_type``:
        enums (``typtype='e'``) are strings, domains decode as their base type, arrays as
        lists split on their element type's delimiter, anything else is its output text
        (logical type unknown) keeping its name.
    """
    known = BUILTIN.get(oid)
    if known is not None:
        return known
    name, typtype, elem, _ = catalog.get(oid, (f"oid:{oid}", "", 0, ","))
    if typtype == "e":
        return _text, ColumnType.STRING, name
    if typtype == "d":  # a domain decodes as its base type (elem holds typbasetype)
        return type_info(elem, catalog)
    if elem:
        dec, _, _ = type_info(elem, catalog)
        delim = "," if elem in BUILTIN else catalog.get(elem, ("", "", 0, ","))[3]
        return array_decoder(dec, delim), ColumnType.JSON, name
    return _text, ColumnType.UNKNOWN, name
