"""Arrow-form batches: a ``pyarrow.Table`` that converts to records or dicts only on demand."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlsync.core.batch import Batch, Op
from etlsync.core.tracker import Ticket

pa = pytest.importorskip("pyarrow")


def _table() -> object:
    return pa.table({
        "i": pa.array([1, None, -3], pa.int64()),
        "s": pa.array(["x", "", None], pa.string()),
        "d": pa.array([Decimal("1.50"), None, Decimal("-2.25")], pa.decimal128(10, 2)),
        "t": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6), None, dt.datetime(1999, 12, 31)],
                      pa.timestamp("us")),
    })


def test_len_and_columns_without_converting() -> None:
    table = _table()
    batch = Batch.from_arrow(table, stream="s", position={"p": 1})
    assert len(batch) == 3 and batch.columns == ("i", "s", "d", "t")
    assert batch.arrow is table  # len() and columns did not convert
    assert "arrow=3x" in repr(batch)


def test_records_convert_once_and_keep_the_arrow_form() -> None:
    batch = Batch.from_arrow(_table())
    records = batch.records
    assert records == [(1, "x", Decimal("1.50"), dt.datetime(2024, 1, 2, 3, 4, 5, 6)),
                       (None, "", None, None),
                       (-3, None, Decimal("-2.25"), dt.datetime(1999, 12, 31))]
    assert batch.arrow is not None and batch.records is records
    assert batch.rows[0] == {"i": 1, "s": "x", "d": Decimal("1.50"),
                             "t": dt.datetime(2024, 1, 2, 3, 4, 5, 6)}
    assert batch.records is records and batch.columns == ("i", "s", "d", "t")
    assert batch.form == "arrow" and len(batch) == 3


@given(st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.text() | st.none()), max_size=30))
def test_rows_equal_the_record_form_of_the_same_values(
        values: list[tuple[int, str | None]]) -> None:
    table = pa.table({"a": pa.array([v[0] for v in values], pa.int64()),
                      "b": pa.array([v[1] for v in values], pa.string())})
    records: list[Sequence[object]] = list(values)
    assert Batch.from_arrow(table).rows == Batch.from_records(("a", "b"), records).rows


def test_zero_columns_keep_the_row_count() -> None:
    batch = Batch.from_arrow(pa.table({"a": [1, 2]}).drop_columns(["a"]))
    assert len(batch) == 2 and batch.records == [(), ()] and batch.rows == [{}, {}]


def test_arrow_alone_and_unique_names() -> None:
    with pytest.raises(ValueError, match="alone"):
        Batch(None, columns=("a",), records=[(1,)], arrow=pa.table({"a": [1]}))
    with pytest.raises(ValueError, match="duplicate column names"):
        Batch.from_arrow(pa.Table.from_arrays([pa.array([1]), pa.array([2])], ["a", "a"]))


def test_with_arrow_keeps_position_tickets_and_ops() -> None:
    ticket = Ticket(1, "p", lambda t: None)
    src = Batch(None, "s", "p", [Op.INSERT, Op.DELETE], None, None, (ticket,),
                arrow=pa.table({"a": [1, 2]}))
    out = src.with_arrow(pa.table({"a": [10, 20]}))
    assert out.position == "p" and out.tickets == (ticket,) and out.ops == [Op.INSERT, Op.DELETE]
    with pytest.raises(ValueError, match="without passing ops"):
        src.with_arrow(pa.table({"a": [10]}))


def test_concat_keeps_arrow_form_for_equal_schemas_only() -> None:
    a = Batch.from_arrow(pa.table({"a": [1, 2]}), position=1)
    b = Batch.from_arrow(pa.table({"a": [3]}), position=2)
    both = Batch.concat([a, b])
    assert both.arrow is not None and both.position == 2 and both.records == [(1,), (2,), (3,)]
    mixed = Batch.concat([Batch.from_arrow(pa.table({"a": [1]})),
                          Batch.from_records(("a",), [(2,)])])
    assert mixed.arrow is None and mixed.records == [(1,), (2,)]
    other = Batch.concat([Batch.from_arrow(pa.table({"a": [1]})),
                          Batch.from_arrow(pa.table({"a": ["x"]}))])
    assert other.arrow is None and other.records == [(1,), ("x",)]


def _read(batch: Batch, barrier: threading.Barrier, what: str) -> None:
    barrier.wait()
    assert len(batch.rows if what == "rows" else batch.records or ()) == 2000


def test_records_and_rows_read_from_two_threads_at_once_agree() -> None:
    for _ in range(50):
        batch = Batch.from_arrow(pa.table({"a": list(range(2000))}))
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=_read, args=(batch, barrier, what))
                   for what in ("rows", "records")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(batch) == 2000
        assert batch.rows == [{"a": i} for i in range(2000)]
