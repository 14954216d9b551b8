"""Binlog event decoding: headers, TABLE_MAP and row events (v1 and v2).

Column names, signedness, charsets, ENUM/SET values and the primary key come from the
TABLE_MAP's optional metadata (``binlog_row_metadata=FULL``). Without it a
:class:`TableMap` gets names from a schema loader and refuses to decode when the
logged column types do not match (never silently wrong columns). Text is decoded as the
server converts it (:mod:`.charsets`); MariaDB's UUID, INET6 and INET4 columns (logged as
BINARY(16) and BINARY(4)) become the text SELECT shows, once :meth:`TableMap.set_data_types`
says which columns they are.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from etlsync.connectors.mysql import values as v
from etlsync.connectors.mysql.charsets import Charsets
from etlsync.connectors.mysql.rowcodec import FastRow, compile_row
from etlsync.core.errors import SchemaError

# event types
QUERY, STOP, ROTATE, FORMAT_DESCRIPTION, XID, TABLE_MAP = 2, 3, 4, 15, 16, 19
WRITE_V1, UPDATE_V1, DELETE_V1, HEARTBEAT, WRITE_V2, UPDATE_V2, DELETE_V2 = 23, 24, 25, 27, 30, 31, 32
MYSQL_GTID, MYSQL_ANON_GTID, MYSQL_PREV_GTIDS, MYSQL_HEARTBEAT_V2 = 33, 34, 35, 41
MARIA_ANNOTATE, MARIA_CHECKPOINT, MARIA_GTID, MARIA_GTID_LIST = 160, 161, 162, 163
ROW_EVENTS = {WRITE_V1: "insert", UPDATE_V1: "update", DELETE_V1: "delete",
              WRITE_V2: "insert", UPDATE_V2: "update", DELETE_V2: "delete"}

UNSUPPORTED_ROW_EVENTS = {39, 166, 167, 168, 169, 170, 171}
"""MySQL PARTIAL_UPDATE_ROWS; MariaDB compressed row events (v2 and v1)."""
HEADER = struct.Struct("<IBIIIH")
NUMERIC = {v.TINY, v.SHORT, v.INT24, v.LONG, v.LONGLONG, v.NEWDECIMAL, v.FLOAT, v.DOUBLE}
CHARACTER = {v.STRING, v.VAR_STRING, v.VARCHAR, v.BLOB, v.GEOMETRY}
FIXED_TEXT: dict[str, tuple[int, Any]] = {"uuid": (16, v.uuid_text), "inet6": (16, v.inet6_text),
                                          "inet4": (4, v.inet4_text)}
"""MariaDB's fixed-size binary types, logged as BINARY(n): size and text form."""
STATIC_CHARSETS = Charsets()
"""Character sets without a server: PyMySQL's collations, Python's codecs."""
_INT_SIZES = {v.TINY: 1, v.SHORT: 2, v.INT24: 3, v.LONG: 4, v.LONGLONG: 8}


def lenenc(b: bytes, p: int) -> tuple[int, int]:
    first = b[p]
    if first < 0xFB:
        return first, p + 1
    if first == 0xFC:
        return b[p + 1] | b[p + 2] << 8, p + 3
    if first == 0xFD:
        return int.from_bytes(b[p + 1:p + 4], "little"), p + 4
    return int.from_bytes(b[p + 1:p + 9], "little"), p + 9


def _bits(b: bytes, p: int, n: int) -> list[bool]:
    """``n`` bits, most significant bit of each byte first (optional metadata bitmaps)."""
    return [bool(b[p + i // 8] & (0x80 >> (i % 8))) for i in range(n)]


@dataclass(slots=True)
class ColumnInfo:
    """What a schema loader reports for degraded mode (no row metadata in the binlog)."""

    name: str
    data_type: str
    unsigned: bool = False
    charset: str | None = "utf8mb4"
    """The column's character set (``None``: binary)."""
    enum_values: list[str] = field(default_factory=list)
    primary: bool = False


_DATA_TYPE_CODES: dict[str, set[int]] = {
    "tinyint": {v.TINY}, "smallint": {v.SHORT}, "mediumint": {v.INT24}, "int": {v.LONG},
    "bigint": {v.LONGLONG}, "float": {v.FLOAT}, "double": {v.DOUBLE},
    "decimal": {v.NEWDECIMAL}, "date": {v.DATE, v.NEWDATE}, "time": {v.TIME, v.TIME2},
    "datetime": {v.DATETIME, v.DATETIME2}, "timestamp": {v.TIMESTAMP, v.TIMESTAMP2},
    "year": {v.YEAR}, "bit": {v.BIT}, "char": {v.STRING}, "binary": {v.STRING},
    "varchar": {v.VARCHAR, v.VAR_STRING}, "varbinary": {v.VARCHAR, v.VAR_STRING},
    "enum": {v.ENUM}, "set": {v.SET}, "json": {v.JSON, v.BLOB},
    "uuid": {v.STRING}, "inet6": {v.STRING}, "inet4": {v.STRING},
}


class TableMap:
    """One TABLE_MAP event: the table's identity and prepared per-column readers."""

    def __init__(self, payload: bytes, p: int, table_id_size: int = 6,
                 charsets: Charsets | None = None, build: bool = True) -> None:
        self.charsets = charsets or STATIC_CHARSETS
        self.table_id = int.from_bytes(payload[p:p + table_id_size], "little")
        p += table_id_size + 2
        n = payload[p]
        self.schema = payload[p + 1:p + 1 + n].decode()
        p += n + 2
        n = payload[p]
        self.table = payload[p + 1:p + 1 + n].decode()
        p += n + 2
        ncols, p = lenenc(payload, p)
        self.types = list(payload[p:p + ncols])
        p += ncols
        mlen, p = lenenc(payload, p)
        self.meta = self._read_meta(payload, p)
        p += mlen
        self.nullable = [bool(payload[p + i // 8] >> (i % 8) & 1) for i in range(ncols)]
        p += (ncols + 7) // 8
        self.names: list[str] | None = None
        self.unsigned = [False] * ncols
        self.charset_names: list[str | None] = ["utf8mb4"] * ncols
        """Each text, ENUM and SET column's character set (``None``: binary)."""
        self.encodings: list[v.TextCodec | None] = ["utf-8"] * ncols
        self.enum_values: list[list[str]] = [[] for _ in range(ncols)]
        self._enum_raw: list[list[bytes]] = [[] for _ in range(ncols)]
        self.data_types: dict[int, str] = {}
        """Columns of MariaDB's UUID, INET6, INET4 types, by index."""
        self.primary_key: tuple[str, ...] = ()
        self._pk_idx: list[int] = []
        self._read_optional(payload, p)
        self.readers: list[v.Reader] = []
        self.fast_row: FastRow | None = None
        if build and self.names is not None:
            self.build()

    @property
    def has_metadata(self) -> bool:
        return self.names is not None

    def _read_meta(self, b: bytes, p: int) -> list[int]:
        meta = []
        for i, t in enumerate(self.types):
            if t in (v.FLOAT, v.DOUBLE, v.BLOB, v.GEOMETRY, v.JSON, v.TIMESTAMP2, v.DATETIME2,
                     v.TIME2, v.TINY_BLOB, v.MEDIUM_BLOB, v.LONG_BLOB):
                meta.append(b[p])
                p += 1
            elif t in (v.VARCHAR, v.VAR_STRING):
                meta.append(b[p] | b[p + 1] << 8)
                p += 2
            elif t in (v.BIT, v.NEWDECIMAL, v.STRING, v.ENUM, v.SET):
                b0, b1 = b[p], b[p + 1]
                p += 2
                if t == v.STRING:
                    if (b0 & 0x30) != 0x30:
                        real, length = b0 | 0x30, b1 | (((b0 & 0x30) ^ 0x30) << 4)
                    else:
                        real, length = b0, b1
                    if real in (v.ENUM, v.SET):
                        self.types[i] = real
                    meta.append(length)
                else:
                    meta.append(b0 << 8 | b1)
            else:
                meta.append(0)
        return meta

    def _read_optional(self, b: bytes, p: int) -> None:
        ncols = len(self.types)
        numeric = [i for i, t in enumerate(self.types) if t in NUMERIC]
        chars = [i for i, t in enumerate(self.types) if t in CHARACTER]
        enums = [i for i, t in enumerate(self.types) if t in (v.ENUM, v.SET)]
        end = len(b)
        while p < end:
            kind = b[p]
            length, p = lenenc(b, p + 1)
            q, stop = p, p + length
            if kind == 1:  # SIGNEDNESS
                for i, flag in zip(numeric, _bits(b, q, len(numeric)), strict=True):
                    self.unsigned[i] = flag
            elif kind in (2, 10):  # DEFAULT_CHARSET, ENUM_AND_SET_DEFAULT_CHARSET
                cols = chars if kind == 2 else enums
                default, q = lenenc(b, q)
                collations = [default] * len(cols)
                while q < stop:
                    idx, q = lenenc(b, q)
                    coll, q = lenenc(b, q)
                    collations[idx] = coll
                for i, c in zip(cols, collations, strict=True):
                    self.charset_names[i] = self.charsets.charset(c)
            elif kind in (3, 11):  # COLUMN_CHARSET, ENUM_AND_SET_COLUMN_CHARSET
                cols = chars if kind == 3 else enums
                for i in cols:
                    coll, q = lenenc(b, q)
                    self.charset_names[i] = self.charsets.charset(coll)
            elif kind == 4:  # COLUMN_NAME
                names = []
                for _ in range(ncols):
                    n, q = lenenc(b, q)
                    names.append(b[q:q + n].decode("utf-8"))
                    q += n
                self.names = names
            elif kind in (5, 6):  # SET_STR_VALUE, ENUM_STR_VALUE
                cols = [i for i in enums if self.types[i] == (v.SET if kind == 5 else v.ENUM)]
                for i in cols:  # bytes in the column's charset, which comes later (10, 11)
                    count, q = lenenc(b, q)
                    raw = []
                    for _ in range(count):
                        n, q = lenenc(b, q)
                        raw.append(b[q:q + n])
                        q += n
                    self._enum_raw[i] = raw
            elif kind == 8:  # SIMPLE_PRIMARY_KEY
                while q < stop:
                    idx, q = lenenc(b, q)
                    self._pk_idx.append(idx)
            elif kind == 9:  # PRIMARY_KEY_WITH_PREFIX
                while q < stop:
                    idx, q = lenenc(b, q)
                    _, q = lenenc(b, q)
                    self._pk_idx.append(idx)
            p = stop
        if self.names is not None:
            self.primary_key = tuple(self.names[i] for i in self._pk_idx)

    def apply_columns(self, columns: Sequence[ColumnInfo]) -> None:
        """Degraded mode: take names and types from the schema as it is now, and refuse
        when it does not match the logged column types."""
        where = f"{self.schema}.{self.table}"
        if len(columns) != len(self.types):
            raise SchemaError(
                f"binlog TABLE_MAP of {where} has {len(self.types)} columns but the table has "
                f"{len(columns)} now (DDL since the event; binlog_row_metadata=FULL avoids this)")
        for i, (col, t) in enumerate(zip(columns, self.types, strict=True)):
            codes = _DATA_TYPE_CODES.get(col.data_type)
            if codes is not None and t not in codes:
                raise SchemaError(
                    f"binlog TABLE_MAP of {where}: column {i} is logged as type {t} but "
                    f"{col.name!r} is {col.data_type} now (DDL since the event); set "
                    "binlog_row_metadata=FULL")
            self.unsigned[i] = col.unsigned
            self.charset_names[i] = col.charset
            if col.enum_values:
                self.enum_values[i] = col.enum_values
                self._enum_raw[i] = []
        self.names = [c.name for c in columns]
        self.primary_key = tuple(c.name for c in columns if c.primary)
        self.set_data_types({c.name: c.data_type for c in columns})
        self.build()

    def fixed_text_candidates(self) -> bool:
        """Whether some column may be a UUID, INET6 or INET4 (a BINARY(16) or (4))."""
        return any(t == v.STRING and self.charset_names[i] is None and self.meta[i] in (4, 16)
                   for i, t in enumerate(self.types))

    def set_data_types(self, data_types: dict[str, str]) -> None:
        """Mark the UUID, INET6 and INET4 columns among ``data_types`` (name to
        information_schema ``DATA_TYPE``) whose logged shape fits."""
        assert self.names is not None
        self.data_types = {}
        for i, name in enumerate(self.names):
            fixed = FIXED_TEXT.get(data_types.get(name, ""))
            if fixed is not None and self.types[i] == v.STRING and self.meta[i] == fixed[0]:
                self.data_types[i] = data_types[name]

    def build(self) -> None:
        """Prepare the readers (after names, charsets and data types are known).

        :raises SchemaError: a column's character set has no decoder."""
        for i, t in enumerate(self.types):
            if t not in CHARACTER and t not in (v.ENUM, v.SET):
                continue
            try:
                enc = self.encodings[i] = self.charsets.codec(self.charset_names[i])
            except LookupError as exc:
                raise SchemaError(f"{self.schema}.{self.table}: column "
                                  f"{self._name(i)!r}: {exc}") from exc
            if self._enum_raw[i]:
                self.enum_values[i] = [v.decode_text(enc or "utf-8", r) for r in self._enum_raw[i]]
        self.readers = [self._reader(i) for i in range(len(self.types))]
        assert self.names is not None
        self.fast_row = compile_row(self.names, self.types, self.meta, self.unsigned,
                                    self.encodings, self.readers, frozenset(self.data_types))

    def _name(self, i: int) -> str:
        return self.names[i] if self.names is not None else f"#{i}"

    def needed_charsets(self) -> list[str | None]:
        """The character sets of the text, ENUM and SET columns."""
        return [self.charset_names[i] for i, t in enumerate(self.types)
                if t in CHARACTER or t in (v.ENUM, v.SET)]

    def _reader(self, i: int) -> v.Reader:
        t, m = self.types[i], self.meta[i]
        if i in self.data_types:
            size, text = FIXED_TEXT[self.data_types[i]]
            return v.fixed_text_reader(size, text)
        if t in _INT_SIZES:
            return v.int_reader(_INT_SIZES[t], self.unsigned[i])
        if t in (v.FLOAT, v.DOUBLE):
            return v.float_reader(4 if t == v.FLOAT else 8)
        if t == v.NEWDECIMAL:
            return v.decimal_reader(m >> 8, m & 0xFF)
        if t in (v.VARCHAR, v.VAR_STRING):
            return v.string_reader(1 if m < 256 else 2, self.encodings[i])
        if t == v.STRING:
            enc = self.encodings[i]
            return v.string_reader(1 if m < 256 else 2, enc, m if enc is None else 0)
        if t in (v.BLOB, v.TINY_BLOB, v.MEDIUM_BLOB, v.LONG_BLOB, v.GEOMETRY):
            return v.string_reader(m, None if t == v.GEOMETRY else self.encodings[i])
        if t == v.JSON:
            return v.json_reader(m)
        if t == v.ENUM:
            return v.enum_reader(m, self.enum_values[i])
        if t == v.SET:
            return v.set_reader(m, self.enum_values[i])
        if t == v.BIT:
            return v.bit_reader((m & 0xFF) + (1 if m >> 8 else 0))
        if t == v.TIMESTAMP2:
            return v.timestamp2_reader(m)
        if t == v.DATETIME2:
            return v.datetime2_reader(m)
        if t == v.TIME2:
            return v.time2_reader(m)
        if t in v.FIXED_READERS:
            return v.FIXED_READERS[t]
        raise SchemaError(f"{self.schema}.{self.table}: binlog column type {t} is not supported")


def decode_rows(tm: TableMap, kind: int, b: bytes, p: int, end: int,
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Decode the rows of a row event body from ``p`` (after table id and flags).

    :returns: ``(rows, before)``: for updates ``rows`` are the after images and ``before``
        the before images; for deletes ``rows`` are the deleted rows.
    """
    if kind >= WRITE_V2:
        extra = b[p] | b[p + 1] << 8
        p += extra
    ncols, p = lenenc(b, p)
    nb = (ncols + 7) // 8
    full = (1 << ncols) - 1
    present1 = int.from_bytes(b[p:p + nb], "little") & full
    p += nb
    update = kind in (UPDATE_V1, UPDATE_V2)
    present2 = present1
    if update:
        present2 = int.from_bytes(b[p:p + nb], "little") & full
        p += nb
    names, readers = tm.names, tm.readers
    assert names is not None
    cols1 = [(names[i], readers[i]) for i in range(ncols) if present1 >> i & 1]
    cols2 = cols1 if present2 == present1 else [
        (names[i], readers[i]) for i in range(ncols) if present2 >> i & 1]
    rows: list[dict[str, Any]] = []
    before: list[dict[str, Any]] = []
    fast = tm.fast_row if present1 == full and present2 == full else None
    if fast is not None and not update:
        nn = nb
        frombytes = int.from_bytes
        append = rows.append
        while p < end:
            if not frombytes(b[p:p + nn], "little") & full:  # no NULLs (padding bits vary)
                row, p = fast(b, p + nn)
            else:
                row, p = _row(cols1, b, p)
            append(row)
        return rows, None
    while p < end:
        row, p = _row(cols1, b, p)
        if update:
            before.append(row)
            row, p = _row(cols2, b, p)
        rows.append(row)
    return rows, (before if update else None)


def _row(cols: list[tuple[str, v.Reader]], b: bytes, p: int) -> tuple[dict[str, Any], int]:
    nn = (len(cols) + 7) // 8
    nulls = int.from_bytes(b[p:p + nn], "little") & ((1 << len(cols)) - 1)
    p += nn
    row: dict[str, Any] = {}
    if not nulls:
        for name, rd in cols:
            row[name], p = rd(b, p)
        return row, p
    for j, (name, rd) in enumerate(cols):
        if nulls >> j & 1:
            row[name] = None
        else:
            row[name], p = rd(b, p)
    return row, p
