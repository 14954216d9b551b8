"""Record-form batches: columns + value sequences, with dicts built only on demand."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlsync.core.batch import Batch, Op, dict_maker
from etlsync.core.tracker import Ticket

_names = st.lists(st.text(max_size=8), min_size=1, max_size=8, unique=True)


@given(_names, st.data())
def test_rows_built_from_records_equal_dict_zip(names: list[str], data: st.DataObject) -> None:
    records = data.draw(st.lists(st.lists(st.integers(), min_size=len(names),
                                          max_size=len(names)), max_size=20))
    batch = Batch.from_records(names, records)
    assert len(batch) == len(records)
    want = [dict(zip(names, r, strict=True)) for r in records]
    assert batch.rows == want
    assert [list(r) for r in batch.rows] == [list(w) for w in want]  # key order kept


def test_reading_rows_caches_dicts_and_keeps_the_record_form() -> None:
    batch = Batch.from_records(("a", "b"), [(1, 2)])
    records = batch.records
    assert records == [(1, 2)] and batch.columns == ("a", "b")
    rows = batch.rows
    assert batch.records is records and batch.columns == ("a", "b")  # another sink still sees them
    assert batch.rows is rows  # built once
    assert batch.form == "records" and len(batch) == 1


@given(st.lists(st.tuples(st.integers(), st.text() | st.none()), max_size=20),
       st.permutations(["a", "b", "z"]))
def test_a_view_gives_the_same_values_in_every_form(values: list[tuple[int, str | None]],
                                                     order: list[str]) -> None:
    records = Batch.from_records(("a", "b"), list(values))
    rows = Batch([{"a": a, "b": b} for a, b in values])
    expected = [tuple({"a": a, "b": b}.get(c) for c in order) for a, b in values]
    assert records.view(order) == expected == rows.view(order)
    assert records.view(order) is records.view(order)  # cached


def test_column_names_cannot_inject_code() -> None:
    names = ("'] or __import__('os') #", '"""', "\\", "a\nb", "{}")
    assert dict_maker(names)(["1", "2", "3", "4", "5"]) == dict(zip(names, "12345", strict=True))


def test_record_of_wrong_width_names_the_columns() -> None:
    with pytest.raises(ValueError, match=r"3 values for 2 columns \['a', 'b'\]"):
        _ = Batch.from_records(("a", "b"), [(1, 2, 3)]).rows


def test_duplicate_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate column names"):
        _ = Batch.from_records(("a", "a"), [(1, 2)]).rows


def test_rows_or_records_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        Batch([{"a": 1}], columns=("a",), records=[(1,)])
    with pytest.raises(ValueError, match="needs rows"):
        Batch(None)


def test_with_records_keeps_position_tickets_and_ops() -> None:
    t = Ticket(1, "p", lambda _t: None)
    batch = Batch([{"a": 1}, {"a": 2}], stream="s", position=7, ops=[Op.INSERT, Op.DELETE],
                  tickets=(t,))
    derived = batch.with_records(("a",), [(10,), (20,)])
    assert (derived.stream, derived.position, derived.tickets) == ("s", 7, (t,))
    assert derived.ops == [Op.INSERT, Op.DELETE]
    assert derived.rows == [{"a": 10}, {"a": 20}]
    with pytest.raises(ValueError, match="without passing ops"):
        batch.with_records(("a",), [(1,)])


def test_concat_keeps_record_form_for_equal_columns() -> None:
    a = Batch.from_records(("x",), [(1,)], position=1)
    b = Batch.from_records(("x",), [(2,)], position=2)
    joined = Batch.concat([a, b])
    assert joined.records == [(1,), (2,)] and joined.position == 2
    mixed = Batch.concat([a, Batch([{"y": 3}], position=3)])
    assert mixed.records is None and mixed.rows == [{"x": 1}, {"y": 3}]


def test_rows_read_from_two_threads_at_once_agree() -> None:
    for _ in range(50):
        batch = Batch.from_records(("a", "b"), [(i, -i) for i in range(20_000)])
        seen: list[list[dict[str, int]]] = []

        def read(b: Batch = batch, out: list[list[dict[str, int]]] = seen) -> None:
            out.append(b.rows)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert all(rows == seen[0] for rows in seen) and len(seen) == 4
        assert batch.records is not None and len(batch.records) == 20_000
