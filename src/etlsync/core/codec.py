"""Lossless JSON encoding of positions and state (datetimes, decimals, bytes, UUIDs, tuples)."""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

import msgspec

_TAG = "$t"


def _wrap(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {_TAG: "float", "v": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        if _TAG in value or not all(isinstance(k, str) for k in value):
            return {_TAG: "dict", "v": [[_wrap(k), _wrap(v)] for k, v in value.items()]}
        return {k: _wrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_wrap(v) for v in value]}
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, (set, frozenset)):
        return {_TAG: "set", "v": sorted((_wrap(v) for v in value), key=repr)}
    raise TypeError(f"cannot encode {type(value).__name__} in a position or state: {value!r}")


_DECODERS: dict[str, Any] = {
    "float": float,
    "tuple": lambda v: tuple(_unwrap(x) for x in v),
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "decimal": Decimal,
    "bytes": base64.b64decode,
    "uuid": uuid.UUID,
    "set": lambda v: {_unwrap(x) for x in v},
    "dict": lambda v: {_unwrap(k): _unwrap(x) for k, x in v},
}


def _unwrap(value: Any) -> Any:
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        tag = value.get(_TAG)
        if tag is not None and len(value) == 2 and "v" in value:
            return _DECODERS[tag](value["v"])
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> bytes:
    """Encode a position or state to JSON bytes that :func:`loads` restores exactly."""
    return msgspec.json.encode(_wrap(value))


def loads(data: bytes | str) -> Any:
    """Decode what :func:`dumps` wrote."""
    return _unwrap(msgspec.json.decode(data))
