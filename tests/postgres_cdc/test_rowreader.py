"""Row layouts learnt by the run reader (``rowreader``): rows read through a layout equal
the rows read column by column, whatever the mix of sizes, lengths and NULLs; a layout whose
check fails (same message size, other lengths) is not used; the caches stay bounded."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlsync.connectors.postgres.replication import rowreader
from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder
from etlsync.connectors.postgres.replication.protocol import copydata
from etlsync.core.errors import DataError
from tests.postgres_cdc.test_chunk_decoder import COLS_A, _insert, _relation

# few values of differing lengths: message sizes repeat, often with other layouts
_pool = st.tuples(
    st.sampled_from(["1", "22", "333", "-4", None]),
    st.sampled_from(["", "a", "bb", "ccc", "é", None]),
    st.sampled_from(["1.00", "22.50", "-3.25", "NaN", None]),
    st.sampled_from(["2024-05-01 10:00:00+00", "2024-05-01 10:00:00.5+00", "infinity",
                     "-infinity", None]),
    st.sampled_from(["0.5", "1e+100", "-0", "Infinity", None]),
)


def _records(dec: PgOutputDecoder, msgs: list[bytes]) -> list[tuple[Any, ...]]:
    data, pos, out = copydata(msgs), 0, []
    while pos < len(data):
        events, pos = dec.decode_chunk(data, pos)
        out += [r for ev in events if ev[0] == "I*" for r in ev[2]]
    return out


def _layouts(dec: PgOutputDecoder, oid: int = 1) -> dict[int, Any]:
    layouts: dict[int, Any] = dec.relations[oid].fast_run.layouts.by_size
    return layouts


def _one_by_one(msgs: list[bytes]) -> list[tuple[Any, ...]]:
    dec = PgOutputDecoder()
    dec.decode(_relation(1, "a", COLS_A), 25)
    return [dec.decode_record(m, 25)[2] for m in msgs]


@given(st.lists(_pool, min_size=1, max_size=200))
def test_rows_read_by_layout_equal_rows_read_column_by_column(rows: list[Any]) -> None:
    msgs = [_insert(1, r) for r in rows]
    dec = PgOutputDecoder()
    _records(dec, [_relation(1, "a", COLS_A)])
    # twice: the second pass reads most rows through the layouts the first one taught
    got = _records(dec, msgs) + _records(dec, msgs)
    assert repr(got) == repr(_one_by_one(msgs) * 2)  # repr: NaN != NaN


def test_a_layout_is_learnt_used_and_checked() -> None:
    dec = PgOutputDecoder()
    _records(dec, [_relation(1, "a", COLS_A)])
    row = ("22", "ab", "1.00", "2024-05-01 10:00:00+00", None)
    same_size = ("222", "a", "1.00", "2024-05-01 10:00:00+00", None)  # other lengths
    assert len(_insert(1, row)) == len(_insert(1, same_size))
    assert _records(dec, [_insert(1, row)]) and not _layouts(dec)  # a size seen once
    _records(dec, [_insert(1, row)])
    assert list(_layouts(dec)) == [len(_insert(1, row)) + 4]  # learnt the second time
    got = _records(dec, [_insert(1, same_size), _insert(1, row)])
    assert got == [(222, "a", Decimal("1.00"), dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC),
                    None),
                   (22, "ab", Decimal("1.00"), dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC),
                    None)]


def test_a_bad_value_in_a_learnt_layout_is_named() -> None:
    dec = PgOutputDecoder()
    _records(dec, [_relation(1, "a", COLS_A)])
    good = ("1", "a", "2.50", None, "0.5")
    _records(dec, [_insert(1, good)] * 3)
    assert _layouts(dec)
    with pytest.raises(DataError, match="c2"):
        _records(dec, [_insert(1, good), _insert(1, ("1", "a", "2.5x", None, "0.5"))])


def test_layouts_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rowreader, "MAX_LAYOUTS", 4)
    dec = PgOutputDecoder()
    _records(dec, [_relation(1, "a", COLS_A)])
    rows = [(str(10 ** k), "x", "1.00", None, None) for k in range(9)]  # 9 sizes
    msgs = [_insert(1, r) for r in rows for _ in range(2)]
    assert _records(dec, msgs) == _one_by_one(msgs)
    assert 0 < len(_layouts(dec)) <= 4
