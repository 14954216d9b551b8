"""Readers for single column values in binlog row images, one factory per column type.

Every reader is ``read(buf, pos) -> (value, new_pos)``; factories are called once per
table map so the per-row loop only calls prepared closures.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Reader = Callable[[bytes, int], tuple[Any, int]]
TextCodec = str | Callable[[bytes], str]
"""A Python codec name or a decoding function (see :mod:`.charsets`)."""

# column types (include/mysql_com.h, enum_field_types)
DECIMAL, TINY, SHORT, LONG, FLOAT, DOUBLE, NULL, TIMESTAMP, LONGLONG, INT24 = range(10)
DATE, TIME, DATETIME, YEAR, NEWDATE, VARCHAR, BIT, TIMESTAMP2, DATETIME2, TIME2 = range(10, 20)
JSON, NEWDECIMAL, ENUM, SET, TINY_BLOB, MEDIUM_BLOB, LONG_BLOB, BLOB, VAR_STRING, STRING, GEOMETRY = (
    range(245, 256))

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def int_reader(size: int, unsigned: bool) -> Reader:
    if size == 3:
        def read24(b: bytes, p: int) -> tuple[Any, int]:
            return int.from_bytes(b[p:p + 3], "little", signed=not unsigned), p + 3
        return read24
    fmt = {1: "b", 2: "h", 4: "i", 8: "q"}[size]
    unpack = struct.Struct("<" + (fmt.upper() if unsigned else fmt)).unpack_from

    def read(b: bytes, p: int) -> tuple[Any, int]:
        return unpack(b, p)[0], p + size
    return read


_F32 = struct.Struct("<f")


def float32_shortest(v: float) -> float:
    """A FLOAT value as etlsync delivers it: the shortest decimal that round-trips the
    stored 32-bit value (16777217 stored as 16777216 gives 16777216.0, 3.14 gives 3.14).
    ``v`` is the exact stored value (as a double, as ``CAST(col AS DOUBLE)`` gives it)."""
    if v != v or v - v != 0:
        return v
    raw = _F32.pack(v)
    for digits in range(1, 10):
        text = f"{v:.{digits}g}"
        try:
            if _F32.pack(float(text)) == raw:
                return float(text)
        except OverflowError:  # rounded up beyond the largest float32
            continue
    return v


def _float32(b: bytes, p: int) -> tuple[Any, int]:
    return float32_shortest(_F32.unpack_from(b, p)[0]), p + 4


_unpack_d = struct.Struct("<d").unpack_from


def _double(b: bytes, p: int) -> tuple[Any, int]:
    return _unpack_d(b, p)[0], p + 8


def float_reader(size: int) -> Reader:
    return _float32 if size == 4 else _double


def decimal_size(precision: int, scale: int) -> int:
    """Bytes of a binary DECIMAL(precision, scale)."""
    intg0, intg0x = divmod(precision - scale, 9)
    frac0, frac0x = divmod(scale, 9)
    return intg0 * 4 + _DIG2BYTES[intg0x] + frac0 * 4 + _DIG2BYTES[frac0x]


def decimal_converter(precision: int, scale: int) -> Callable[[bytes], Decimal]:
    """Bytes of a binary DECIMAL to :class:`Decimal` (big-endian groups of 9 digits, sign
    in the top bit, negative values bit-inverted)."""
    intg0, intg0x = divmod(precision - scale, 9)
    frac0, frac0x = divmod(scale, 9)
    size = decimal_size(precision, scale)
    bits = size * 8
    top = 1 << (bits - 1)
    full = (1 << bits) - 1
    # (bit width, digits) of each group from the most significant end
    groups = [(_DIG2BYTES[intg0x] * 8, intg0x)] if intg0x else []
    groups += [(32, 9)] * intg0
    n_int = len(groups)
    groups += [(32, 9)] * frac0
    if frac0x:
        groups.append((_DIG2BYTES[frac0x] * 8, frac0x))
    # generated, straight-line code: one shift-and-mask per group of nine digits
    parts = []
    shift = bits
    for width, digits in groups:
        shift -= width
        parts.append((f"((x >> {shift}) & {(1 << width) - 1})", digits))
    int_parts, frac_parts = parts[:n_int], parts[n_int:]
    ip = "0"
    for expr, digits in int_parts:
        ip = f"({ip}) * {10 ** digits} + {expr}"
    fp = "0"
    for expr, digits in frac_parts:
        fp = f"({fp}) * {10 ** digits} + {expr}"
    body = f"""
def conv(raw):
    x = from_bytes(raw, "big")
    if x & {top}:
        x ^= {top}
        sign = ""
    else:
        x = (~x & {full}) ^ {top}
        sign = "-"
    return D(f"{{sign}}{{{ip}}}" + ("" if not {scale} else f".{{{fp}:0{scale}d}}"))
"""
    ns: dict[str, Any] = {"from_bytes": int.from_bytes, "D": Decimal}
    exec(body, ns)
    fn: Callable[[bytes], Decimal] = ns["conv"]
    return fn


def decimal_reader(precision: int, scale: int) -> Reader:
    size = decimal_size(precision, scale)
    conv = decimal_converter(precision, scale)

    def read(b: bytes, p: int) -> tuple[Any, int]:
        return conv(b[p:p + size]), p + size
    return read


def decode_text(codec: TextCodec, raw: bytes) -> str:
    """``raw`` as text: a codec name decodes with ``surrogateescape``, else the function."""
    if isinstance(codec, str):
        return raw.decode(codec, "surrogateescape")
    return codec(raw)


def string_reader(length_bytes: int, encoding: TextCodec | None, pad_to: int = 0) -> Reader:
    """A length-prefixed string; ``encoding`` None means binary (bytes), padded with NUL
    bytes to ``pad_to`` (BINARY(n) columns are logged without their padding)."""
    def read(b: bytes, p: int) -> tuple[Any, int]:
        n = b[p] if length_bytes == 1 else int.from_bytes(b[p:p + length_bytes], "little")
        p += length_bytes
        raw = b[p:p + n]
        if encoding is None:
            if pad_to > n:
                raw = raw + b"\0" * (pad_to - n)
            return raw, p + n
        return decode_text(encoding, raw), p + n
    return read


def uuid_text(raw: bytes) -> str:
    """MariaDB's UUID text of its 16 bytes (the binlog holds them in text order)."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def inet4_text(raw: bytes) -> str:
    return ".".join(str(x) for x in raw)


def inet6_text(raw: bytes) -> str:
    """MariaDB's INET6 text (``Inet6::to_string``): lower-case hex words, the longest run
    of zero words (the first of equal runs; a single zero word too) as ``::``, and an
    IPv4-compatible or IPv4-mapped address's last 32 bits in dotted form."""
    words = [raw[i] << 8 | raw[i + 1] for i in range(0, 16, 2)]
    gap_pos, gap_len, pos = -1, -1, -1
    for i, w in enumerate([*words, 1]):  # the sentinel closes a run at the end
        if w == 0 and pos < 0:
            pos = i
        elif w != 0 and pos >= 0:
            if i - pos > gap_len:
                gap_pos, gap_len = pos, i - pos
            pos = -1
    out, i = "", 0
    while i < 8:
        if i == gap_pos:
            out += "::" if i == 0 else ":"
            i += gap_len
            continue
        if i == 6 and gap_pos == 0 and (gap_len == 6 or (gap_len == 5 and words[5] == 0xFFFF)):
            return out + inet4_text(raw[12:])
        out += f"{words[i]:x}" + (":" if i < 7 else "")
        i += 1
    return out


def fixed_text_reader(size: int, text: Callable[[bytes], str]) -> Reader:
    """A MariaDB fixed-size binary type (UUID, INET6, INET4) as its text."""
    def read(b: bytes, p: int) -> tuple[Any, int]:
        n = b[p]
        raw = b[p + 1:p + 1 + n]
        return text(raw + b"\0" * (size - n)), p + 1 + n
    return read


def enum_reader(size: int, values: list[str]) -> Reader:
    def read(b: bytes, p: int) -> tuple[Any, int]:
        i = int.from_bytes(b[p:p + size], "little")
        return (values[i - 1] if 0 < i <= len(values) else ""), p + size
    return read


def set_reader(size: int, values: list[str]) -> Reader:
    def read(b: bytes, p: int) -> tuple[Any, int]:
        mask = int.from_bytes(b[p:p + size], "little")
        return ",".join(v for i, v in enumerate(values) if mask >> i & 1), p + size
    return read


def bit_reader(nbytes: int) -> Reader:
    def read(b: bytes, p: int) -> tuple[Any, int]:
        return int.from_bytes(b[p:p + nbytes], "big"), p + nbytes
    return read


def _year(b: bytes, p: int) -> tuple[Any, int]:
    v = b[p]
    return (1900 + v if v else 0), p + 1


def _date(b: bytes, p: int) -> tuple[Any, int]:
    v = b[p] | b[p + 1] << 8 | b[p + 2] << 16
    day, month, year = v & 31, (v >> 5) & 15, v >> 9
    if not (day and month and year):
        return None, p + 3  # zero dates have no Python value
    return dt.date(year, month, day), p + 3


def _frac(b: bytes, p: int, fsp: int) -> tuple[int, int]:
    n = (fsp + 1) // 2
    if not n:
        return 0, p
    v = int.from_bytes(b[p:p + n], "big")
    return v * (10_000, 100, 1)[n - 1], p + n


def timestamp2_reader(fsp: int) -> Reader:
    def read(b: bytes, p: int) -> tuple[Any, int]:
        secs = int.from_bytes(b[p:p + 4], "big")
        us, q = _frac(b, p + 4, fsp)
        if secs == 0 and us == 0:
            return None, q  # the zero timestamp
        return _EPOCH + dt.timedelta(seconds=secs, microseconds=us), q
    return read


def _timestamp(b: bytes, p: int) -> tuple[Any, int]:
    secs = int.from_bytes(b[p:p + 4], "little")
    return (_EPOCH + dt.timedelta(seconds=secs) if secs else None), p + 4


def datetime2_converter(fsp: int) -> Callable[[bytes], Any]:
    """Bytes of a DATETIME2(fsp) value (5 bytes + fraction) to a naive datetime."""
    mult = (0, 10_000, 100, 1)[(fsp + 1) // 2]
    from_bytes, datetime = int.from_bytes, dt.datetime

    def conv(raw: bytes) -> Any:
        v = from_bytes(raw[:5], "big") - 0x8000000000
        ymd, hms = v >> 17, v & 0x1FFFF
        ym = ymd >> 5
        year, month, day = ym // 13, ym % 13, ymd & 31
        if not (year and month and day):
            return None
        us = from_bytes(raw[5:], "big") * mult if mult else 0
        return datetime(year, month, day, hms >> 12, (hms >> 6) & 63, hms & 63, us)
    return conv


def datetime2_reader(fsp: int) -> Reader:
    def read(b: bytes, p: int) -> tuple[Any, int]:
        v = int.from_bytes(b[p:p + 5], "big") - 0x8000000000
        us, q = _frac(b, p + 5, fsp)
        ymd, hms = v >> 17, v & 0x1FFFF
        ym = ymd >> 5
        year, month, day = ym // 13, ym % 13, ymd & 31
        if not (year and month and day):
            return None, q
        return dt.datetime(year, month, day, hms >> 12, (hms >> 6) & 63, hms & 63, us), q
    return read


def _datetime(b: bytes, p: int) -> tuple[Any, int]:
    v = int.from_bytes(b[p:p + 8], "little")
    d, t = divmod(v, 1_000_000)
    y, md = divmod(d, 10_000)
    if not (y and md // 100 and md % 100):
        return None, p + 8
    return dt.datetime(y, md // 100, md % 100, t // 10_000, t // 100 % 100, t % 100), p + 8


def time2_reader(fsp: int) -> Reader:
    n = (fsp + 1) // 2

    def read(b: bytes, p: int) -> tuple[Any, int]:
        if n == 3:
            packed = int.from_bytes(b[p:p + 6], "big") - 0x800000000000
            q = p + 6
        else:
            intpart = int.from_bytes(b[p:p + 3], "big") - 0x800000
            frac = int.from_bytes(b[p + 3:p + 3 + n], "big") if n else 0
            if n and intpart < 0 and frac:
                intpart += 1
                frac -= 0x100 if n == 1 else 0x10000
            packed = (intpart << 24) + frac * (10_000 if n == 1 else 100 if n == 2 else 0)
            q = p + 3 + n
        sign = -1 if packed < 0 else 1
        packed = abs(packed)
        hms, us = packed >> 24, packed & 0xFFFFFF
        h, m, s = (hms >> 12) & 0x3FF, (hms >> 6) & 63, hms & 63
        return sign * dt.timedelta(hours=h, minutes=m, seconds=s, microseconds=us), q
    return read


def _time(b: bytes, p: int) -> tuple[Any, int]:
    v = int.from_bytes(b[p:p + 3], "little", signed=True)
    sign, v = (-1 if v < 0 else 1), abs(v)
    return sign * dt.timedelta(hours=v // 10_000, minutes=v // 100 % 100, seconds=v % 100), p + 3


def json_reader(length_bytes: int) -> Reader:
    def read(b: bytes, p: int) -> tuple[Any, int]:
        n = int.from_bytes(b[p:p + length_bytes], "little")
        p += length_bytes
        raw = b[p:p + n]
        if not raw:
            return "null", p + n
        return json.dumps(decode_json(raw), ensure_ascii=False), p + n
    return read


def _null(b: bytes, p: int) -> tuple[Any, int]:
    return None, p


FIXED_READERS: dict[int, Reader] = {
    YEAR: _year, DATE: _date, NEWDATE: _date, TIMESTAMP: _timestamp, DATETIME: _datetime,
    TIME: _time, NULL: _null,
}


# -- MySQL binary JSON (sql-common/json_binary.cc) ------------------------------------------
def _varlen(b: bytes, p: int) -> tuple[int, int]:
    n, shift = 0, 0
    while True:
        x = b[p]
        p += 1
        n |= (x & 0x7F) << shift
        if not x & 0x80:
            return n, p
        shift += 7


_SCALARS = {5: ("<h", 2), 6: ("<H", 2), 7: ("<i", 4), 8: ("<I", 4), 9: ("<q", 8), 10: ("<Q", 8),
            11: ("<d", 8)}


def _scalar(t: int, b: bytes, p: int) -> Any:
    if t == 4:
        return {0: None, 1: True, 2: False}[b[p]]
    if t in _SCALARS:
        fmt, _ = _SCALARS[t]
        return struct.unpack_from(fmt, b, p)[0]
    if t == 12:
        n, q = _varlen(b, p)
        return b[q:q + n].decode("utf-8")
    if t == 15:  # opaque: a MySQL type byte, then the data
        n, q = _varlen(b, p + 1)
        return b[q:q + n].decode("utf-8", "replace")
    if t in (0, 1, 2, 3):
        return _container(t, b, p)
    raise ValueError(f"unknown binary JSON type {t}")


def _container(t: int, b: bytes, base: int) -> Any:
    large = t in (1, 3)
    w = 4 if large else 2
    fmt = "<I" if large else "<H"
    count = struct.unpack_from(fmt, b, base)[0]
    p = base + 2 * w
    keys: list[str] = []
    if t in (0, 1):
        for _ in range(count):
            koff = struct.unpack_from(fmt, b, p)[0]
            klen = struct.unpack_from("<H", b, p + w)[0]
            keys.append(b[base + koff:base + koff + klen].decode("utf-8"))
            p += w + 2
    values = []
    for _ in range(count):
        vt = b[p]
        inline = vt == 4 or vt in (5, 6) or (large and vt in (7, 8))
        if inline:
            values.append(_scalar(vt, b, p + 1))
        else:
            off = struct.unpack_from(fmt, b, p + 1)[0]
            values.append(_scalar(vt, b, base + off))
        p += 1 + w
    if t in (0, 1):
        return dict(zip(keys, values, strict=True))
    return values


def decode_json(raw: bytes) -> Any:
    """Decode a MySQL binary JSON document to Python values."""
    return _scalar(raw[0], raw, 1)
