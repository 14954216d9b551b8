"""BSON documents to rows: type conversion, flattening, schema inference, key encoding."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal

import bson
import msgspec
from bson import Binary, Decimal128, Int64, ObjectId, Timestamp
from bson.regex import Regex

from etlsync.core.batch import Row
from etlsync.core.errors import ConfigError
from etlsync.core.schema import Column, ColumnType, Schema, infer_type

Flatten = Literal["dotted", "json"] | None
"""How nested values become columns: ``None`` keeps them nested, ``"dotted"`` makes one
column per leaf (``a.b.c``; arrays become JSON strings), ``"json"`` turns every nested
document or array into a JSON string."""

_PLAIN = frozenset((str, int, float, bool, type(None), dt.datetime))


def convert_value(value: Any) -> Any:
    """One BSON value as a plain Python value: ObjectId -> str, Decimal128 -> Decimal,
    Int64 -> int, Binary -> bytes (UUID subtype -> UUID), Timestamp -> aware datetime,
    Regex -> pattern string; documents and arrays are converted recursively."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t is ObjectId:
        return str(value)
    if t is dict:
        return {k: v if type(v) in _PLAIN else convert_value(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [v if type(v) in _PLAIN else convert_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: convert_value(v) for k, v in value.items()}
    if t is Decimal128:
        return value.to_decimal()
    if t is Int64:
        return int(value)
    if t is Binary:
        if value.subtype in (3, 4) and len(value) == 16:
            return uuid.UUID(bytes=bytes(value))
        return bytes(value)
    if t is Timestamp:
        return value.as_datetime()
    if t is Regex:
        return value.pattern
    if isinstance(value, (bytes, Decimal, uuid.UUID, dt.date, dt.time)):
        return value
    return str(value)


def _json_hook(value: Any) -> Any:
    converted = convert_value(value)
    if type(converted) is type(value):
        return str(value)
    return converted


_json = msgspec.json.Encoder(enc_hook=_json_hook, decimal_format="string")


def to_json(value: Any) -> str:
    """A nested BSON value as a JSON string (ObjectId as its hex string)."""
    return _json.encode(value).decode()


def _flatten_into(out: Row, prefix: str, doc: Mapping[str, Any], depth: int,
                  max_depth: int) -> None:
    for k, v in doc.items():
        name = f"{prefix}{k}"
        t = type(v)
        if t in _PLAIN:
            out[name] = v
        elif (t is dict or isinstance(v, Mapping)) and depth < max_depth and v:
            _flatten_into(out, name + ".", v, depth + 1, max_depth)
        elif t is list or isinstance(v, Mapping):
            out[name] = to_json(v)
        else:
            out[name] = convert_value(v)


def _convert_in_place(value: Any) -> Any:
    t = type(value)
    if t is dict:
        for k, v in value.items():
            if type(v) not in _PLAIN:
                value[k] = _convert_in_place(v)
        return value
    if t is list:
        for i, v in enumerate(value):
            if type(v) not in _PLAIN:
                value[i] = _convert_in_place(v)
        return value
    return convert_value(value)


def to_row(doc: Mapping[str, Any], flatten: Flatten = None, max_depth: int = 32, *,
           own: bool = False) -> Row:
    """A document as a row, converted and flattened as asked (see :data:`Flatten`).

    ``own=True`` says the caller owns ``doc`` (freshly decoded): without flattening it is
    then converted in place and returned, saving a copy.
    """
    if flatten is None:
        if own and type(doc) is dict:
            return _convert_in_place(doc)  # type: ignore[no-any-return]
        row: Row = {}
        for k, v in doc.items():
            row[k] = v if type(v) in _PLAIN else convert_value(v)
        return row
    if flatten == "json":
        row = {}
        for k, v in doc.items():
            t = type(v)
            if t in _PLAIN:
                row[k] = v
            elif t is dict or t is list or isinstance(v, Mapping):
                row[k] = to_json(v)
            else:
                row[k] = convert_value(v)
        return row
    if flatten == "dotted":
        row = {}
        _flatten_into(row, "", doc, 0, max_depth)
        return row
    raise ConfigError(f"flatten must be None, 'dotted' or 'json', not {flatten!r}")


def check_flatten(flatten: Any) -> Flatten:
    if flatten not in (None, "dotted", "json"):
        raise ConfigError(f"flatten must be None, 'dotted' or 'json', not {flatten!r}")
    return flatten  # type: ignore[no-any-return]


def unflatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild nested documents from dotted column names (the inverse of ``"dotted"``)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if "." not in k:
            out[k] = v
            continue
        parts = k.split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = {}
                node[p] = nxt
            node = nxt
        node[parts[-1]] = v
    return out


def get_path(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` in ``doc``, or ``None``."""
    node: Any = doc
    for p in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(p)
    return node


# -- keys in positions --------------------------------------------------------------------
def encode_value(value: Any) -> bytes:
    """A BSON value (an ``_id``, a cursor value) as bytes for a JSON position: lossless for
    every BSON type, ObjectId included."""
    return bson.encode({"v": value})


def decode_value(data: bytes) -> Any:
    """Inverse of :func:`encode_value`."""
    return bson.decode(data)["v"]


def ts_to_list(ts: Timestamp | None) -> list[int] | None:
    return None if ts is None else [ts.time, ts.inc]


def ts_from_list(value: Any) -> Timestamp | None:
    if value is None:
        return None
    return Timestamp(int(value[0]), int(value[1]))


# -- schemas ------------------------------------------------------------------------------


def infer_schema(rows: Iterable[Row]) -> Schema:
    """A schema from sample rows: columns in first-seen order (``_id`` first), the type of
    the first non-null value (STRING where values disagree), primary key ``_id``."""
    types: dict[str, ColumnType | None] = {"_id": None}
    for row in rows:
        for k, v in row.items():
            if v is None:
                types.setdefault(k, None)
                continue
            t = infer_type(v)
            old = types.get(k)
            if old is None:
                types[k] = t
            elif old != t:
                numeric = {ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.DECIMAL}
                types[k] = ColumnType.FLOAT if {old, t} <= numeric else ColumnType.STRING
    cols = tuple(
        Column(k, t or ColumnType.STRING, nullable=k != "_id", native="bson")
        for k, t in types.items()
    )
    return Schema(cols, primary_key=("_id",))
