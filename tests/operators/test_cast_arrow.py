"""Cast's arrow path: the same results as the record path, value for value, or a fallback."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from etlsync import Batch, Column, DataError, Op, Schema
from etlsync.operators import Cast

pa = pytest.importorskip("pyarrow")


def canon(v: Any) -> Any:
    """A value with its exact type: floats by ``repr`` (NaN, -0.0), decimals by
    ``as_tuple`` (the exponent), datetimes with their ``tzinfo``."""
    if isinstance(v, float):
        return (float, repr(v))
    if isinstance(v, Decimal):
        return (Decimal, v.as_tuple())
    if isinstance(v, dt.datetime):
        return (dt.datetime, v, v.tzinfo)
    return (type(v), v)


async def run(cast: Cast, batch: Batch) -> tuple[Any, Any]:
    """The comparable result of ``cast`` on ``batch`` (values with types, ops, columns, or
    the error), and the output's arrow table when it is in arrow form."""
    try:
        out = await cast.process(batch)
    except DataError as exc:
        return ("error", str(exc), exc.row, exc.column, exc.value), None
    assert isinstance(out, Batch)
    arrow = out.arrow
    assert out.records is not None
    return ("ok", [tuple(map(canon, r)) for r in out.records], out.ops, out.columns), arrow


async def check_same(ctype: str, values: list[str | None], empty_as_null: bool = True,
                     on_error: str = "fail") -> Any:
    """Cast ``values`` as an arrow batch and as a record batch; the results (or errors) and
    the rejections must be the same. Returns the output table when it was in arrow form."""
    table = pa.table({"c": pa.array(values, pa.string())})
    ops = [Op.INSERT, Op.UPDATE] * (len(values) // 2) + [Op.DELETE] * (len(values) % 2)
    fast = Cast({"c": ctype}, empty_as_null=empty_as_null, on_error=on_error)
    slow = Cast({"c": ctype}, empty_as_null=empty_as_null, on_error=on_error)
    got, arrow_out = await run(fast, Batch.from_arrow(table, stream="s", ops=ops))
    expected, _ = await run(slow, Batch.from_records(("c",), [(v,) for v in values],
                                                     stream="s", ops=ops))
    if currently_in_test_context():  # hypothesis statistics: how often the fast path ran
        event("arrow path" if arrow_out is not None else "record path")
    assert got == expected
    assert fast.rejected == slow.rejected
    return arrow_out


def near(*extra: str) -> st.SearchStrategy[str]:
    return st.sampled_from(["", " ", "  ", "\t", "nan", "NaN", "inf", "-Infinity", "sNaN",
                            "\u0661", "\u0663\u0664", "\uff11", "x", "-", "+", ".", *extra])


def mixed(clean: st.SearchStrategy[str], odd: st.SearchStrategy[str]
          ) -> st.SearchStrategy[list[str | None]]:
    """Lists of clean values (and "" and None) most of the time, else with odd ones mixed in."""
    value = st.one_of(clean, st.just(""), st.none())
    return st.one_of(st.lists(value, max_size=6),
                     st.lists(st.one_of(value, odd), min_size=1, max_size=6))


# CAST_ARROW_EXAMPLES=5000 for a deeper search
PROPS = settings(max_examples=int(os.environ.get("CAST_ARROW_EXAMPLES", "400")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
OPTIONS = (st.booleans(), st.sampled_from(["fail", "skip"]))

INTEGERS = mixed(
    st.one_of(st.from_regex(r"\A-?0{0,3}[0-9]{1,19}\Z"), st.integers().map(str)),
    st.one_of(near("+5", "1_000", "1.0", "1e3", "00", "-0", " 7", "7 ", "9223372036854775807",
                   "-9223372036854775808", "9223372036854775808", "1" * 40),
              st.text(alphabet="0123456789-+ _.e\u0663\t", max_size=6)))


@PROPS
@given(INTEGERS, *OPTIONS)
async def test_integer_matches_the_record_path(values: list[str | None], empty_as_null: bool,
                                               on_error: str) -> None:
    await check_same("integer", values, empty_as_null, on_error)


FLOAT_TEXT = (r"\A[-+]?([0-9]{1,25}(\.[0-9]{0,25})?|\.[0-9]{1,25})"
              r"([eE][-+]?[0-9]{1,3})?\Z")
FLOATS = mixed(
    st.one_of(st.from_regex(FLOAT_TEXT), st.floats().map(repr), st.floats().map(str),
              st.decimals(allow_nan=False, allow_infinity=False).map(str)),
    st.one_of(near("1e400", "-1e400", "1e-400", "4.9e-324", "2.2250738585072014e-308",
                   "1_0", "0x1p3", "1.5e", "5.", "1.e5", "+.5", "-.5", "\u0661.\u0665", "infinity",
                   "-inf", "+nan", " 1.5", "1.5 ", "1,5", "1.5f", "1d5"),
              st.text(alphabet="0123456789-+ _.eE", max_size=8)))


@PROPS
@given(FLOATS, *OPTIONS)
async def test_float_matches_the_record_path(values: list[str | None], empty_as_null: bool,
                                             on_error: str) -> None:
    await check_same("float", values, empty_as_null, on_error)


def decimals_of_scale(scale: int) -> st.SearchStrategy[str]:
    fraction = rf"\.[0-9]{{{scale}}}" if scale else ""
    return st.from_regex(rf"\A[-+]?[0-9]{{1,{38 - scale}}}{fraction}\Z")


DECIMALS = st.one_of(
    st.integers(0, 10).flatmap(lambda s: mixed(
        decimals_of_scale(s), near("-0.00", "-0", "-0.0", "+0.00", "-000.000", "1e5", "1E+2",
                                   "1,5", " 1.50", "1.50 ", "1.", ".5", "\u0661.\u0665\u0660", "Infinity",
                                   "1" * 39, "1" * 38, "-" + "1" * 38, "0." + "0" * 38,
                                   "1.5", "1.500", "12")))
    ,
    mixed(st.decimals(allow_nan=False, allow_infinity=False).map(str),
          st.text(alphabet="0123456789-+ .eE_", max_size=8)),
)


@PROPS
@given(DECIMALS, *OPTIONS)
async def test_decimal_matches_the_record_path(values: list[str | None], empty_as_null: bool,
                                               on_error: str) -> None:
    await check_same("decimal", values, empty_as_null, on_error)


WORDS = ["true", "t", "yes", "y", "1", "on", "false", "f", "no", "n", "0", "off"]


@st.composite
def any_case(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(WORDS))
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))


BOOLEANS = mixed(any_case(), st.one_of(
    near(" true", "true ", "tru", "2", "yes!", "10", "01", "\u0130", "\u212a", "\uff54rue", "TRUE\n", "truee",
         "ye", "of", "nO ", "ON\t"),
    st.text(alphabet="truefalsyonTRUEFALSYON01 \u0130\u212a", max_size=6)))


@PROPS
@given(BOOLEANS, *OPTIONS)
async def test_boolean_matches_the_record_path(values: list[str | None], empty_as_null: bool,
                                               on_error: str) -> None:
    await check_same("boolean", values, empty_as_null, on_error)


DATE_TEXT = r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"
DATES = mixed(
    st.one_of(st.dates().map(dt.date.isoformat), st.from_regex(DATE_TEXT)),
    st.one_of(near("2023-02-30", "2023-02-29", "2000-02-29", "1900-02-29", "0000-01-01",
                   "2024-1-01", "20240101", "2024-W01-1", "2024-001", "2024-01-01T00:00:00",
                   "2024-01-01 00:00", "2024-01-01 ", " 2024-01-01", "2024-13-01", "2024-00-10",
                   "2024-01-32", "+2024-01-01", "\uff12\uff10\uff12\uff14-01-01", "10000-01-01",
                   "2024-01-01Z"),
              st.text(alphabet="0123456789- T:", max_size=12)))


@PROPS
@given(DATES, *OPTIONS)
async def test_date_matches_the_record_path(values: list[str | None], empty_as_null: bool,
                                            on_error: str) -> None:
    await check_same("date", values, empty_as_null, on_error)


@st.composite
def iso_datetimes(draw: st.DrawFn) -> str:
    when = draw(st.datetimes())
    spec = draw(st.sampled_from(["auto", "minutes", "seconds", "milliseconds", "microseconds"]))
    return when.isoformat(sep=draw(st.sampled_from("T ")), timespec=spec)


DATETIME_TEXT = (r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}(:[0-9]{2}(:[0-9]{2}"
                 r"(\.[0-9]{1,7})?)?)?)?\Z")
DATETIMES = mixed(
    st.one_of(iso_datetimes(), st.from_regex(DATETIME_TEXT), st.dates().map(dt.date.isoformat)),
    st.one_of(near("2024-01-01 10:15:00+02:00", "2024-01-01T10:15:00Z", "2024-01-01T10:15-05:30",
                   "2024-01-01 24:00:00", "2024-01-01 23:59:60", "2024-01-01 10",
                   "2024-01-01t10:00", "2024-01-01  10:00", "2024-01-01T10:15:00.1234567",
                   "2024-01-01T10:15:00,5", "2024-02-30 10:00", "0000-01-01 00:00",
                   "2024-01-01T10:15:00+00:00", "20240101T101500", "2024-01-01T10:15:00 ",
                   "2024-01-01T1:15"),
              st.datetimes(timezones=st.timezones()).map(dt.datetime.isoformat),
              st.text(alphabet="0123456789- T:.+Z", max_size=20)))


@PROPS
@given(DATETIMES, *OPTIONS)
async def test_datetime_matches_the_record_path(values: list[str | None], empty_as_null: bool,
                                                on_error: str) -> None:
    await check_same("datetime", values, empty_as_null, on_error)


@PROPS
@given(DATETIMES, *OPTIONS)
async def test_timestamp_matches_the_record_path(values: list[str | None], empty_as_null: bool,
                                                 on_error: str) -> None:
    await check_same("timestamp", values, empty_as_null, on_error)


@PROPS
@given(st.lists(st.one_of(st.text(), st.none()), max_size=6), *OPTIONS)
async def test_string_matches_the_record_path(values: list[str | None], empty_as_null: bool,
                                              on_error: str) -> None:
    out = await check_same("string", values, empty_as_null, on_error)
    assert out is not None


CLEAN: list[tuple[str, list[str | None], Any, list[Any]]] = [
    ("integer", ["1", "-007", "", None, "999999999999999999"], pa.int64(),
     [1, -7, None, None, 999999999999999999]),
    ("float", ["1.5", "-0", "1e5", ".25", "+3."], pa.float64(), [1.5, -0.0, 1e5, 0.25, 3.0]),
    ("decimal", ["1.50", "-2.25", "0.00", "+007.10"], pa.decimal128(38, 2),
     [Decimal("1.50"), Decimal("-2.25"), Decimal("0.00"), Decimal("7.10")]),
    ("decimal", ["12", "-3"], pa.decimal128(38, 0), [Decimal(12), Decimal(-3)]),
    ("boolean", ["Yes", "off", "T", "0", ""], pa.bool_(), [True, False, True, False, None]),
    ("date", ["2024-02-29", "0001-01-01", "9999-12-31"], pa.date32(),
     [dt.date(2024, 2, 29), dt.date(1, 1, 1), dt.date(9999, 12, 31)]),
    ("datetime", ["2024-01-01 10:15", "2024-01-01T10:15:00.5", "2024-01-01"], pa.timestamp("us"),
     [dt.datetime(2024, 1, 1, 10, 15), dt.datetime(2024, 1, 1, 10, 15, 0, 500000),
      dt.datetime(2024, 1, 1)]),
    ("timestamp", ["2024-01-01 10:15:00.123456"], pa.timestamp("us", tz="+00:00"),
     [dt.datetime(2024, 1, 1, 10, 15, 0, 123456, tzinfo=dt.UTC)]),
    ("string", ["a", "", None], pa.string(), ["a", "", None]),
]


@pytest.mark.parametrize(("ctype", "values", "arrow_type", "expected"), CLEAN)
async def test_clean_columns_take_the_arrow_path(ctype: str, values: list[str | None],
                                                 arrow_type: Any, expected: list[Any]) -> None:
    out = await check_same(ctype, values)
    assert out is not None, f"{ctype}: the arrow path was not taken"
    assert out.schema.field("c").type == arrow_type
    assert [canon(v) for v in out.column("c").to_pylist()] == [canon(v) for v in expected]


@pytest.mark.parametrize(("ctype", "values"), [
    ("integer", ["1", " 2"]), ("integer", ["1", "+2"]), ("integer", ["1_000"]),
    ("integer", ["1" * 19]), ("float", ["nan"]), ("float", ["1e400"]), ("float", ["\u0661"]),
    ("decimal", ["1.5", "1.50"]), ("decimal", ["-0.00"]), ("decimal", ["1e5"]),
    ("boolean", ["true "]), ("date", ["2023-02-30"]), ("date", ["0000-01-01"]),
    ("datetime", ["2024-01-01T10:00:00+02:00"]), ("timestamp", ["2024-01-01T10:00:00Z"]),
    ("time", ["10:15"]), ("integer", [" "]),
])
async def test_odd_columns_fall_back_to_the_record_path(ctype: str, values: list[str]) -> None:
    assert await check_same(ctype, values) is None
    assert await check_same(ctype, values, on_error="skip") is None


async def test_formats_fall_back_and_typed_columns_pass_through() -> None:
    table = pa.table({"d": ["01/02/2024"], "n": pa.array([5], pa.int64()),
                      "w": pa.array([5], pa.int32()), "keep": ["x"]})
    cast = Cast({"d": "date", "n": "integer"}, formats={"d": "%d/%m/%Y"})
    out = await cast.process(Batch.from_arrow(table))
    assert isinstance(out, Batch) and out.arrow is None
    assert out.rows == [{"d": dt.date(2024, 2, 1), "n": 5, "w": 5, "keep": "x"}]
    out = await Cast({"n": "integer", "absent": "float"}).process(Batch.from_arrow(table))
    assert isinstance(out, Batch) and out.arrow is not None
    assert out.arrow.equals(table)  # a column of the target type, and the others, untouched
    out = await Cast({"w": "integer"}).process(Batch.from_arrow(table))
    assert isinstance(out, Batch) and out.arrow is None  # int32: the record path decides
    assert out.rows[0]["w"] == 5


async def test_arrow_batches_keep_position_ops_schema_and_count_rows() -> None:
    schema = Schema((Column("id"), Column("price"), Column("note")), ("id",))
    table = pa.table({"id": ["1", "2"], "price": ["1.50", "2.00"], "note": ["a", "b"]})
    cast = Cast({"id": "integer", "price": "decimal"})
    out = await cast.process(Batch.from_arrow(table, stream="orders", position=7, schema=schema,
                                              ops=[Op.INSERT, Op.UPDATE]))
    assert isinstance(out, Batch) and out.arrow is not None
    assert out.position == 7 and out.stream == "orders" and out.ops == [Op.INSERT, Op.UPDATE]
    assert out.schema == cast.transform_schema(schema)
    assert out.arrow.column_names == ["id", "price", "note"]
    assert out.arrow.schema.field("note").type == pa.string()
    # rows are counted across both paths: the error names the run's row number
    with pytest.raises(DataError) as info:
        await cast.process(Batch.from_arrow(
            pa.table({"id": ["3", "4"], "price": ["3.00", "4,00"], "note": ["c", "d"]}),
            stream="orders", schema=schema))
    assert info.value.row == 4
    assert "stream 'orders', row 4, key id='4': column 'price'" in str(info.value)
    skip = Cast({"id": "integer"}, on_error="skip")
    out = await skip.process(Batch.from_arrow(pa.table({"id": ["1", "x", "3"]}),
                                              ops=[Op.INSERT, Op.UPDATE, Op.DELETE]))
    assert isinstance(out, Batch) and out.rows == [{"id": 1}, {"id": 3}]
    assert out.ops == [Op.INSERT, Op.DELETE] and skip.rejected == 1


async def test_chunked_empty_and_record_batch_tables() -> None:
    chunked = pa.Table.from_batches([pa.record_batch({"n": ["1", ""]}),
                                     pa.record_batch({"n": ["3", "4"]})])
    out = await Cast({"n": "integer"}).process(Batch.from_arrow(chunked))
    assert isinstance(out, Batch) and out.arrow is not None
    assert out.records == [(1,), (None,), (3,), (4,)]
    out = await Cast({"n": "integer"}).process(Batch.from_arrow(pa.record_batch({"n": ["5"]})))
    assert isinstance(out, Batch) and out.arrow is not None and out.records == [(5,)]
    empty = pa.table({"n": pa.array([], pa.string()), "d": pa.array([], pa.string())})
    out = await Cast({"n": "integer", "d": "decimal"}).process(Batch.from_arrow(empty))
    assert isinstance(out, Batch) and out.arrow is not None and out.records == []
