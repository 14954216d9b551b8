"""COPY text rendering: every value the text path renders must reach the server as exactly the
value asyncpg's binary COPY sends; everything else must be left to the binary path."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from etlsync.connectors.postgres.copytext import (
    base_type,
    encode_columns,
    encode_text,
    render_column,
)

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

# target type -> values the text path renders (NULL included in each)
RENDERED: dict[str, list[Any]] = {
    "bigint": [0, -1, 2**63 - 1, -(2**63), True, False, None, 42],
    "integer": [0, 2**31 - 1, -(2**31), None],
    "smallint": [0, 32767, -32768, None],
    "numeric": [Decimal("1.50"), Decimal("-0"), Decimal("0E-8"), Decimal("1E+3"),
                Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"),
                Decimal("123456789012345678901234567890.123456789"), Decimal("1E+100"),
                Decimal("-1.23E-20"), None],
    "numeric(10,2)": [Decimal("1.005"), Decimal("-99999999.99"), Decimal("0.1"), None],
    "double precision": [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 5e-324,
                         1.7976931348623157e308, 0.1, 1e-7, -123.456e200, None],
    "text": ["", None, "a\\b", "tab\there", "nl\nx", "cr\rx", "\\N", "N", "\\.",
             "ünïcödé ✓ 𝄞", "'quote\"", " spaces ", "\\\\t", "end\\"],
    "character varying(20)": ["short", "", None, "x\ty"],
    "character(5)": ["ab", "abcde", None],
    "jsonb": ['{"a": [1, "x\\ty"]}', "null", '"s"', None],
    "boolean": [True, False, None],
    "date": [dt.date(2024, 2, 29), dt.date(1000, 1, 1), dt.date(1970, 1, 1),
             dt.date(9998, 12, 31), dt.datetime(2024, 5, 1, 13, 0), None],
    "timestamp(0) without time zone": [dt.datetime(2024, 1, 1) + dt.timedelta(seconds=s * 7919)
                                       for s in range(2000)],
    "timestamp(3) with time zone": [dt.datetime(2024, 1, 1, 0, 0, 0, 1500, tzinfo=IST), None],
    "time(0) without time zone": [dt.time(1, 2, 3), dt.time(4, 5, 6, 700000)],
    "timestamp without time zone": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 0, 1),
                                    dt.datetime(1900, 12, 31, 23, 59, 59, 999999),
                                    dt.datetime(2, 1, 1), None],
    "timestamp with time zone": [dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                                 dt.datetime(2024, 6, 1, 12, 30, 5, 123, tzinfo=IST),
                                 dt.datetime(2024, 3, 31, 2, 30, tzinfo=BERLIN),
                                 dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=BERLIN),
                                 dt.datetime(1950, 1, 1, tzinfo=dt.timezone(-dt.timedelta(hours=8))),
                                 None],
    "time without time zone": [dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(12, 0, 0, 5),
                               None],
    "uuid": [uuid.UUID(int=0), uuid.uuid4(), None],
}

# (target type, values) the text path must leave to the binary path
NOT_RENDERED: list[tuple[str, list[Any]]] = [
    ("timestamp without time zone", [dt.datetime.max]),
    ("timestamp without time zone", [dt.datetime.min]),
    ("timestamp without time zone", [dt.datetime(2024, 1, 1, tzinfo=dt.UTC)]),
    ("timestamp with time zone", [dt.datetime(2024, 1, 1)]),  # naive: asyncpg uses local time
    ("timestamp with time zone",
     [dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=3661)))]),
    ("date", [dt.date.max]),
    ("date", [dt.date.min]),
    ("numeric", [Decimal("1.5"), 2]),  # mixed types
    ("numeric", [Decimal("sNaN")]),
    ("bigint", ["1"]),  # a string into a number column: binary refuses it, text would parse
    ("bigint", [1.0]),
    ("boolean", [1, 0]),
    ("text", ["nul\x00byte"]),
    ("text", ["lone \ud800 surrogate"]),
    ("text", [b"bytes"]),
    ("interval", [dt.timedelta(seconds=1)]),
    ("bytea", [b"\x00\x01"]),
    ("jsonb", [{"a": 1}]),
    ("bigint[]", [[1, 2]]),
    ("time without time zone", [dt.time(1, 2, tzinfo=dt.UTC)]),
    ("double precision", [Decimal("1.5")]),
    ("real", [1.5]),
]


@pytest.fixture
async def twin(conn: asyncpg.Connection, unique_name: str) -> AsyncIterator[tuple[str, str]]:
    names = (f"{unique_name}_bin", f"{unique_name}_txt")
    yield names
    for t in names:
        await conn.execute(f'DROP TABLE IF EXISTS "{t}"')


async def load_both(conn: asyncpg.Connection, twin: tuple[str, str], native: str,
                    values: list[Any]) -> tuple[list[Any], list[Any]]:
    """Load ``values`` through binary COPY and through COPY text; return both tables'
    rows as ``(n, value, value::text)``."""
    out = []
    for t in twin:
        await conn.execute(f'DROP TABLE IF EXISTS "{t}"; CREATE TABLE "{t}" (n int, v {native})')
    ns = list(range(len(values)))
    await conn.copy_records_to_table(twin[0], columns=["n", "v"],
                                     records=list(zip(ns, values, strict=True)))
    data = encode_columns([ns, values], ["integer", native])
    assert data is not None, f"{native}: {values!r} not rendered"
    await conn.copy_to_table(twin[1], columns=["n", "v"], source=memoryview(data),
                             format="text")
    for t in twin:
        out.append([tuple(r) for r in await conn.fetch(
            f'SELECT n, v, v::text FROM "{t}" ORDER BY n')])
    return out[0], out[1]


@pytest.mark.integration
@pytest.mark.parametrize("native", sorted(RENDERED))
async def test_text_copy_loads_the_same_values_as_binary_copy(
        conn: asyncpg.Connection, twin: tuple[str, str], native: str) -> None:
    await conn.execute("SET TimeZone = 'America/New_York'")  # offsets must not depend on it
    binary, text = await load_both(conn, twin, native, RENDERED[native])
    assert len(text) == len(RENDERED[native])
    # the text form compares NaN, -0.0, numeric scales and padding exactly
    assert [(n, s) for n, _, s in text] == [(n, s) for n, _, s in binary]


@pytest.mark.integration
async def test_null_and_empty_string_stay_apart(conn: asyncpg.Connection,
                                                twin: tuple[str, str]) -> None:
    binary, text = await load_both(conn, twin, "text", ["", None, "\\N", "NULL"])
    assert [v for _, v, _ in text] == ["", None, "\\N", "NULL"] == [v for _, v, _ in binary]


@pytest.mark.integration
async def test_a_column_of_nulls_and_one_row_and_one_column(conn: asyncpg.Connection,
                                                            twin: tuple[str, str]) -> None:
    binary, text = await load_both(conn, twin, "numeric", [None, None])
    assert text == binary == [(0, None, None), (1, None, None)]
    assert encode_columns([["only"]], ["text"]) == b"only\n"
    assert encode_text([("a", 1), ("b\tc", None)], ["text", "bigint"]) == b"a\t1\nb\\tc\t\\N\n"


@pytest.mark.parametrize(("native", "values"), NOT_RENDERED,
                         ids=[f"{n}-{v!r}"[:60] for n, v in NOT_RENDERED])
def test_values_the_text_path_cannot_render_exactly_go_to_binary(native: str,
                                                                 values: list[Any]) -> None:
    assert encode_columns([values], [native]) is None
    assert encode_columns([list(range(len(values))), values], ["bigint", native]) is None


def test_subclasses_render_as_their_base_type() -> None:
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    assert fields(render_column([7, Level.HIGH, True], "bigint")) == ["7", "3", "1"]
    assert fields(render_column([dt.datetime(2024, 1, 2, 3, 4)], "date")) == ["2024-01-02"]


def fields(parts: list[Any]) -> list[str]:
    return ["".join(p) for p in zip(*parts, strict=True)]


def test_whole_second_timestamps_render_as_isoformat_from_cached_parts() -> None:
    values = [dt.datetime(2024, 1, 1) + dt.timedelta(seconds=s * 7919) for s in range(3000)]
    parts = render_column(values, "timestamp")
    assert len(parts) == 3  # date, hour and minute, second
    assert fields(parts) == [v.isoformat() for v in values]
    micro = [*values, dt.datetime(2024, 1, 1, 0, 0, 0, 5)]
    assert fields(render_column(micro, "timestamp")) == [v.isoformat() for v in micro]
    assert encode_columns([[dt.datetime(1, 5, 1)]], ["timestamp"]) is None
    assert encode_columns([[dt.datetime(9999, 5, 1)]], ["timestamp"]) is None


def test_type_modifiers_are_dropped_and_nothing_else() -> None:
    assert base_type("numeric(10,2)") == "numeric"
    assert base_type("timestamp(3) with time zone") == "timestamp with time zone"
    assert base_type("time(0) without time zone") == "time without time zone"
    assert base_type("character varying(20)") == "character varying"
    assert base_type("numeric(5)[]") == "numeric[]"
    # a naive value must not reach a timestamptz column with a modifier as naive text
    assert encode_columns([[dt.datetime(2024, 1, 1)]], ["timestamp(3) with time zone"]) is None


def test_empty_input_is_not_rendered() -> None:
    assert encode_columns([], []) is None
    assert encode_columns([[]], ["text"]) is None
    assert encode_text([], ["text"]) is None
