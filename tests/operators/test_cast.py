"""Cast: typed values from strings, NULL handling, precise errors, skip-and-count."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etlsync import Batch, Column, ColumnType, ConfigError, DataError, Op, Schema
from etlsync.operators import Cast


async def cast_rows(cast: Cast, rows: list[dict[str, object]], **kw: object) -> list[dict]:
    out = await cast.process(Batch(rows, **kw))  # type: ignore[arg-type]
    assert isinstance(out, Batch)
    return out.rows


async def test_cast_converts_each_type() -> None:
    cast = Cast({"i": "integer", "f": "float", "d": "decimal", "b": "boolean", "day": "date",
                 "t": "time", "dt": "datetime", "ts": "timestamp", "s": "string"})
    [row] = await cast_rows(cast, [{
        "i": " 42 ", "f": "1.5", "d": "12.50", "b": "Yes", "day": "2024-03-01", "t": "10:15:00",
        "dt": "2024-03-01 10:15:00", "ts": "2024-03-01T10:15:00+02:00", "s": 7}])
    assert row == {
        "i": 42, "f": 1.5, "d": Decimal("12.50"), "b": True, "day": dt.date(2024, 3, 1),
        "t": dt.time(10, 15), "dt": dt.datetime(2024, 3, 1, 10, 15),
        "ts": dt.datetime(2024, 3, 1, 10, 15, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "s": "7"}
    assert isinstance(row["d"], Decimal) and str(row["d"]) == "12.50"


async def test_cast_datetime_normalises_aware_values_to_naive_utc() -> None:
    [row] = await cast_rows(Cast({"a": "datetime", "b": "timestamp"}),
                            [{"a": "2024-03-01T12:00:00+02:00", "b": "2024-03-01 12:00:00"}])
    assert row["a"] == dt.datetime(2024, 3, 1, 10, 0)
    assert row["b"] == dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


async def test_cast_formats_apply_per_column() -> None:
    cast = Cast({"day": "date", "price": "decimal"},
                formats={"day": "%d/%m/%Y", "price": ","})
    [row] = await cast_rows(cast, [{"day": "31/12/2023", "price": "1,234.50"}])
    assert row == {"day": dt.date(2023, 12, 31), "price": Decimal("1234.50")}


async def test_empty_strings_become_null_except_for_strings() -> None:
    rows = await cast_rows(Cast({"n": "integer", "s": "string"}), [{"n": "", "s": ""}])
    assert rows == [{"n": None, "s": ""}]
    with pytest.raises(DataError, match="column 'n'"):
        await cast_rows(Cast({"n": "integer"}, empty_as_null=False), [{"n": ""}])


async def test_cast_error_names_column_value_row_and_stream() -> None:
    cast = Cast({"price": "decimal"})
    schema = Schema((Column("id", ColumnType.INTEGER), Column("price")), ("id",))
    await cast_rows(cast, [{"id": 1, "price": "1.00"}], stream="orders", schema=schema)
    with pytest.raises(DataError) as info:
        await cast_rows(cast, [{"id": 2, "price": "2.00"}, {"id": 3, "price": "12,5O"}],
                        stream="orders", schema=schema)
    err = info.value
    assert err.column == "price" and err.value == "12,5O" and err.row == 3
    assert "stream 'orders', row 3, key id=3: column 'price'" in str(err)
    assert "'12,5O' to decimal" in str(err)


async def test_cast_error_mentions_the_format() -> None:
    with pytest.raises(DataError, match=r"to date \(format '%d/%m/%Y'\)"):
        await cast_rows(Cast({"d": "date"}, formats={"d": "%d/%m/%Y"}), [{"d": "2024-01-01"}])


@pytest.mark.parametrize(("ctype", "value"), [
    ("integer", "1.5"), ("integer", "1_000"), ("integer", 2.5), ("float", "x"),
    ("decimal", "NaN"), ("decimal", "1e"), ("boolean", "maybe"), ("boolean", 2),
    ("date", "2024-13-01"), ("datetime", "yesterday"),
])
async def test_invalid_values_raise_data_error(ctype: str, value: object) -> None:
    with pytest.raises(DataError, match=f"to {ctype}"):
        await cast_rows(Cast({"c": ctype}), [{"c": value}])


async def test_on_error_skip_drops_rows_counts_them_and_keeps_ops_aligned() -> None:
    cast = Cast({"n": "integer"}, on_error="skip")
    out = await cast.process(Batch(
        [{"n": "1"}, {"n": "x"}, {"n": "3"}], ops=[Op.INSERT, Op.UPDATE, Op.DELETE],
        before=[None, {"n": "0"}, {"n": "3"}]))
    assert isinstance(out, Batch)
    assert out.rows == [{"n": 1}, {"n": 3}]
    assert out.ops == [Op.INSERT, Op.DELETE]
    assert out.before == [None, {"n": "3"}]
    assert cast.rejected == 1


def test_unknown_type_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"column 'p': unknown type 'decmal'.*'decimal'"):
        Cast({"p": "decmal"})
    with pytest.raises(ConfigError, match="not cast: q"):
        Cast({"p": "date"}, formats={"q": "%Y"})
    with pytest.raises(ConfigError, match="on_error"):
        Cast({"p": "date"}, on_error="ignore")


async def test_input_rows_are_not_mutated_and_typed_values_pass_through() -> None:
    row = {"n": "5", "m": 6, "b": True}
    [out] = await cast_rows(Cast({"n": "integer", "m": "integer", "b": "integer"}), [row])
    assert row == {"n": "5", "m": 6, "b": True}
    assert out == {"n": 5, "m": 6, "b": 1}


def test_transform_schema_sets_the_cast_types() -> None:
    schema = Schema((Column("id"), Column("price", native="TEXT")), ("id",))
    out = Cast({"price": "decimal", "extra": "date"}).transform_schema(schema)
    assert out.column("price").type is ColumnType.DECIMAL
    assert out.column("price").native == "TEXT"
    assert out.column("extra").type is ColumnType.DATE
    assert out.primary_key == ("id",)


@settings(deadline=None)  # a loaded shared machine must not make it flaky
@given(st.integers(), st.decimals(allow_nan=False, allow_infinity=False),
       st.dates(), st.datetimes(), st.booleans())
async def test_string_forms_round_trip(i: int, d: Decimal, day: dt.date, when: dt.datetime,
                                       b: bool) -> None:
    cast = Cast({"i": "integer", "d": "decimal", "day": "date", "when": "datetime",
                 "b": "boolean"})
    [row] = await cast_rows(cast, [{"i": str(i), "d": str(d), "day": day.isoformat(),
                                    "when": when.isoformat(), "b": str(b).lower()}])
    assert row == {"i": i, "d": d, "day": day, "when": when, "b": b}
    assert str(row["d"]) == str(d)


MIXED_TYPES = {"i": "integer", "f": "float", "d": "decimal", "b": "boolean", "day": "date",
               "t": "time", "dt": "datetime", "ts": "timestamp", "s": "string"}
MIXED_ROWS: list[dict[str, object]] = [
    {"i": "1", "f": "1.5", "d": "1.50", "b": "yes", "day": "2024-03-01", "t": "10:15:00",
     "dt": "2024-03-01 10:15:00", "ts": "2024-03-01T10:15:00+02:00", "s": 7, "x": "kept"},
    {"i": " 2 ", "f": "", "d": "1,5", "b": "0", "day": "2024-03-01T00:00:00", "t": None,
     "dt": "2024-03-01T12:00:00+02:00", "ts": "2024-03-01 10:15:00", "s": "s", "x": None},
    {"i": 3, "f": 2, "d": 2.5, "b": True, "day": dt.datetime(2024, 1, 2, 3, 4), "t": "  ",
     "dt": dt.date(2024, 5, 6), "ts": 0, "s": dt.date(2024, 1, 1), "x": ""},
    {"i": None, "f": "-inf", "d": Decimal("3.25"), "b": None, "day": None, "t": "01:02",
     "dt": None, "ts": None, "s": None, "x": "y"},
]


def record_batch(rows: list[dict[str, object]], **kw: object) -> Batch:
    names = tuple(rows[0])
    return Batch.from_records(names, [tuple(r[n] for n in names) for r in rows],
                              **kw)  # type: ignore[arg-type]


async def test_record_form_gives_the_dict_form_results_and_stays_record_form() -> None:
    for rows in (MIXED_ROWS, MIXED_ROWS[:1], MIXED_ROWS[3:]):
        expected = await cast_rows(Cast(MIXED_TYPES, formats={"d": ","}), [dict(r) for r in rows])
        batch = record_batch(rows, stream="s", position=9)
        before = list(batch.records or [])
        out = await Cast(MIXED_TYPES, formats={"d": ","}).process(batch)
        assert isinstance(out, Batch)
        assert out.records is not None and out.columns == tuple(rows[0])
        assert batch.records == before  # the input records are untouched, no dicts built
        assert out.position == 9 and out.stream == "s"
        assert out.rows == expected
        assert [type(v) for r in out.rows for v in r.values()] == [
            type(v) for r in expected for v in r.values()]


async def test_record_form_fast_columns_and_missing_columns() -> None:
    rows: list[dict[str, object]] = [
        {"id": str(i), "p": f"{i}.5", "at": f"2024-01-01 00:00:{i:02d}"} for i in range(50)]
    cast = Cast({"id": "integer", "p": "decimal", "at": "datetime", "absent": "integer"})
    out = await cast.process(record_batch(rows))
    assert isinstance(out, Batch) and out.records is not None
    assert out.columns == ("id", "p", "at")
    assert out.rows == await cast_rows(Cast(cast.types), [dict(r) for r in rows])
    assert out.rows[7] == {"id": 7, "p": Decimal("7.5"), "at": dt.datetime(2024, 1, 1, 0, 0, 7)}


async def test_record_form_errors_name_the_row_and_key_and_skip_keeps_ops_aligned() -> None:
    cast = Cast({"price": "decimal"})
    schema = Schema((Column("id", ColumnType.INTEGER), Column("price")), ("id",))
    await cast.process(record_batch([{"id": 1, "price": "1.00"}], stream="orders", schema=schema))
    with pytest.raises(DataError) as info:
        await cast.process(record_batch([{"id": 2, "price": "2.00"}, {"id": 3, "price": "12,5O"}],
                                        stream="orders", schema=schema))
    assert info.value.row == 3 and info.value.value == "12,5O"
    assert "stream 'orders', row 3, key id=3: column 'price'" in str(info.value)
    skip = Cast({"n": "integer"}, on_error="skip")
    out = await skip.process(record_batch(
        [{"n": "1"}, {"n": "x"}, {"n": "3"}], ops=[Op.INSERT, Op.UPDATE, Op.DELETE],
        before=[None, {"n": "0"}, {"n": "3"}]))
    assert isinstance(out, Batch) and out.records is not None
    assert out.rows == [{"n": 1}, {"n": 3}]
    assert out.ops == [Op.INSERT, Op.DELETE] and out.before == [None, {"n": "3"}]
    assert skip.rejected == 1
    empty = await skip.process(Batch.from_records(("n",), []))
    assert isinstance(empty, Batch) and empty.records == []


async def test_record_form_columns_of_numbers_convert_like_the_dict_form() -> None:
    types = {"d": "decimal", "f": "float", "i": "integer", "day": "date", "at": "datetime"}
    rows: list[dict[str, object]] = [
        {"d": 0.1, "f": 1, "i": 2.0, "day": dt.datetime(2024, 1, 2, 3), "at": 0},
        {"d": 7, "f": Decimal("2.5"), "i": True, "day": dt.date(2024, 1, 3),
         "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}]
    out = await Cast(types).process(record_batch(rows))
    assert isinstance(out, Batch)
    assert out.rows == await cast_rows(Cast(types), [dict(r) for r in rows])
    assert out.rows[0]["d"] == Decimal("0.1") and str(out.rows[1]["d"]) == "7"


async def test_record_form_fast_columns_still_reject_non_finite_and_convert_offsets() -> None:
    for bad in ("NaN", "-Infinity", "snan", "inf"):
        with pytest.raises(DataError, match="to decimal"):
            await Cast({"d": "decimal"}).process(record_batch([{"d": "1.5"}, {"d": bad}]))
    rows: list[dict[str, object]] = [{"at": "2024-03-01T12:00:00+02:00"},
                                     {"at": "2024-03-01 12:00:00"}]
    out = await Cast({"at": "datetime"}).process(record_batch(rows))
    assert isinstance(out, Batch)
    assert out.rows == [{"at": dt.datetime(2024, 3, 1, 10)}, {"at": dt.datetime(2024, 3, 1, 12)}]
