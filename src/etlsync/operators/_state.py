"""Compact, lossless encoding of large operator states: column by column, in one C-speed
JSON encode, returned as bytes (which the checkpoint codec stores as base64 without walking
the values). A state of 100,000 groups encodes in milliseconds instead of the generic
codec's value-by-value walk."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from etlsync.core.codec import dumps, loads

_JSON = {int, float, str, bool}
"""JSON keeps these apart exactly (``1``, ``1.0``, ``true``, ``"1"``)."""
_BIG = 2**63
_DECODE = {
    "decimal": lambda v: None if v is None else Decimal(v),
    "datetime": lambda v: None if v is None else dt.datetime.fromisoformat(v),
    "date": lambda v: None if v is None else dt.date.fromisoformat(v),
}


def _kind(values: Sequence[Any]) -> str:
    types = set(map(type, values))
    types.discard(type(None))
    if types <= _JSON:
        if float in types and not all(type(v) is not float or math.isfinite(v) for v in values):
            return "any"
        if int in types and not all(type(v) is not int or -_BIG < v < _BIG for v in values):
            return "any"
        return "plain"
    if types == {Decimal}:
        return "decimal"
    if types == {dt.datetime}:
        return "datetime"
    if types == {dt.date}:
        return "date"
    return "any"


def pack_columns(columns: Sequence[Sequence[Any]]) -> bytes:
    """Encode columns of values (each a sequence, all of one length)."""
    out: list[Any] = []
    for col in columns:
        kind = _kind(col)
        if kind == "plain":
            out.append(["p", list(col)])
        elif kind == "any":
            out.append(["a", dumps(list(col)).decode()])
        else:
            out.append([kind, [None if v is None else v.isoformat() if kind != "decimal"
                               else str(v) for v in col]])
    return msgspec.json.encode(out)


def unpack_columns(data: bytes) -> list[list[Any]]:
    """The columns :func:`pack_columns` encoded."""
    cols: list[list[Any]] = []
    for kind, values in msgspec.json.decode(data):
        if kind == "p":
            cols.append(values)
        elif kind == "a":
            cols.append(loads(values))
        else:
            cols.append(list(map(_DECODE[kind], values)))
    return cols
