"""The compiled per-relation tuple reader agrees with the careful loop on every value."""

from __future__ import annotations

import datetime as dt
import struct

from hypothesis import given
from hypothesis import strategies as st

from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder, Relation
from etlsync.connectors.postgres.types import UNCHANGED

# (type oid, text-form strategy)
_TS = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))
COLUMNS = [
    (23, st.integers(-2**31, 2**31 - 1).map(str)),
    (25, st.text(st.characters(exclude_categories=["Cs"]), max_size=20)),
    (16, st.sampled_from(["t", "f"])),
    (1700, st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str)),
    (701, st.floats(allow_nan=False, allow_infinity=False).map(repr)),
    (1184, st.one_of(st.sampled_from(["infinity", "-infinity"]),
                     _TS.map(lambda t: t.isoformat(" ") + "+00"))),
    (1114, st.one_of(st.sampled_from(["infinity", "-infinity"]),
                     _TS.map(lambda t: t.isoformat(" ")))),
]


def _value(text: object) -> bytes:
    if text is None:
        return b"n"
    if text is UNCHANGED:
        return b"u"
    raw = str(text).encode()
    return b"t" + struct.pack("!i", len(raw)) + raw


@given(st.tuples(*(st.one_of(st.none(), st.just(UNCHANGED), s) for _, s in COLUMNS)))
def test_compiled_reader_matches_careful_loop(values: tuple[object, ...]) -> None:
    rel = Relation(1, "public", "t", "d",
                   [(1 if i == 0 else 0, f"c{i}", oid, -1) for i, (oid, _) in enumerate(COLUMNS)])
    rel.build({})
    data = b"xx" + struct.pack("!h", len(values)) + b"".join(_value(v) for v in values)
    fast = rel.fast_tuple(data, 2)
    slow = PgOutputDecoder()._slow_tuple(data, 2, rel)
    assert fast == slow
    assert fast[1] == len(data)
