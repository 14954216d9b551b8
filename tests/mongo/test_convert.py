"""Document-to-row conversion, flattening and position encoding."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from bson import Binary, Decimal128, Int64, ObjectId, Timestamp
from hypothesis import given
from hypothesis import strategies as st

from etlsync.connectors.mongo.convert import (
    decode_value,
    encode_value,
    infer_schema,
    to_json,
    to_row,
    unflatten,
)
from etlsync.core.codec import dumps, loads
from etlsync.core.schema import ColumnType


def test_bson_types_become_plain_values() -> None:
    oid = ObjectId()
    u = uuid.uuid4()
    when = dt.datetime(2024, 5, 6, 7, 8, 9)
    row = to_row({"_id": oid, "d": Decimal128("12.50"), "n": Int64(7), "t": when,
                  "u": Binary.from_uuid(u), "b": Binary(b"\x00\x01"),
                  "ts": Timestamp(1700000000, 3)})
    assert row["_id"] == str(oid)
    assert row["d"] == Decimal("12.50") and isinstance(row["d"], Decimal)
    assert row["n"] == 7 and type(row["n"]) is int
    assert row["t"] == when
    assert row["u"] == u
    assert row["b"] == b"\x00\x01"
    assert row["ts"] == dt.datetime.fromtimestamp(1700000000, dt.UTC)


def test_dotted_flattening_names_leaves_and_keeps_arrays_as_json() -> None:
    oid = ObjectId()
    row = to_row({"_id": 1, "a": {"b": {"c": 1}, "d": oid}, "tags": ["x", {"y": 2}], "e": {}},
                 "dotted")
    assert row == {"_id": 1, "a.b.c": 1, "a.d": str(oid), "tags": '["x",{"y":2}]', "e": "{}"}


def test_json_flattening_serialises_nested_values() -> None:
    row = to_row({"_id": 1, "a": {"b": Decimal128("1.5"), "t": dt.datetime(2024, 1, 2)}, "x": 3},
                 "json")
    assert row == {"_id": 1, "a": '{"b":"1.5","t":"2024-01-02T00:00:00"}', "x": 3}


def test_max_depth_stops_flattening() -> None:
    assert to_row({"a": {"b": {"c": 1}}}, "dotted", max_depth=1) == {"a.b": '{"c":1}'}


_keys = st.text(st.characters(codec="ascii", exclude_characters=".$\x00"), min_size=1,
                max_size=5)
_leaves = st.one_of(st.none(), st.integers(-10**12, 10**12), st.text(max_size=8), st.booleans())
_docs = st.recursive(
    st.dictionaries(_keys, _leaves, min_size=1, max_size=4),
    lambda inner: st.dictionaries(_keys, st.one_of(_leaves, inner), min_size=1, max_size=4),
    max_leaves=20,
)


@given(_docs)
def test_dotted_flatten_round_trips(doc: dict[str, Any]) -> None:
    assert unflatten(to_row(doc, "dotted")) == doc


@given(st.one_of(st.builds(ObjectId), st.integers(-2**63, 2**63 - 1), st.text(max_size=10),
                 st.dictionaries(_keys, st.integers(0, 9), max_size=3)))
def test_ids_survive_position_encoding(value: Any) -> None:
    assert decode_value(loads(dumps({"last_id": encode_value(value)}))["last_id"]) == value


def test_infer_schema_from_rows() -> None:
    schema = infer_schema([{"_id": "a", "n": 1, "f": None}, {"_id": "b", "n": 2.5, "s": "x",
                                                            "j": [1]}])
    assert schema.primary_key == ("_id",)
    assert schema.names == ["_id", "n", "f", "s", "j"]
    assert schema.column("n").type is ColumnType.FLOAT
    assert schema.column("s").type is ColumnType.STRING
    assert schema.column("j").type is ColumnType.JSON


def test_to_json_handles_object_ids() -> None:
    oid = ObjectId()
    assert to_json({"x": oid}) == f'{{"x":"{oid}"}}'
