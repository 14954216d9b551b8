"""Typed values rendered into PostgreSQL's COPY ``text`` format, a column at a time.

asyncpg's binary ``copy_records_to_table`` encodes every value in a Python-level call per
value (``numeric`` through ``Decimal.as_tuple()``): that was most of the sink's CPU. Here
each column is rendered with one C-level ``map`` of the type's ``__str__``/``__repr__`` (the
server parses text about as fast as ``psql \\copy``), rows are joined with C-level joins.

Only (Python type, target type) pairs whose text form the server reads back as exactly the
value asyncpg's binary encoder would send are rendered; for anything else (``bytes``,
``timedelta``, containers, arrays, subclasses, a column mixing types, values asyncpg maps
to ``infinity``, offsets with seconds, ...) :func:`encode_text` returns ``None`` and the
caller uses the binary path. ``tests/postgres/test_copytext.py`` round-trips every rendered
pair through both paths.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from operator import attrgetter
from typing import Any

NULL = "\\N"

INT_TYPES = frozenset({"smallint", "integer", "bigint", "int2", "int4", "int8", "numeric"})
"""Target types an integer's text is read back exactly as (also for the arrow COPY)."""
TEXT_TYPES = frozenset({"text", "character varying", "varchar", "character", "bpchar", "name",
                    "citext", "json", "jsonb"})
"""Target types a string's text is read back exactly as (also for the arrow COPY)."""
_BOOL = {True: "t", False: "f"}
_MODIFIER = re.compile(r"\s*\([^)]*\)")


class _Unsupported(Exception):
    """A column that the text path cannot render exactly (the binary path takes the batch)."""


def base_type(native: str) -> str:
    """The type without modifiers: ``numeric(10,2)`` -> ``numeric``, ``timestamp(3) with
    time zone`` -> ``timestamp with time zone``, ``numeric(5)[]`` -> ``numeric[]``."""
    return " ".join(_MODIFIER.sub("", native).lower().split())


def _strs(values: Sequence[Any]) -> Sequence[str]:
    joined = "".join(values)  # TypeError unless every value is a str
    if "\x00" in joined:
        raise _Unsupported  # the server rejects NUL in text either way; let binary say so
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        return [v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r") for v in values]
    return values


def _no_edge_years(out: list[str]) -> list[str]:
    # asyncpg sends date/datetime min and max as -infinity/infinity: leave years 1 and
    # 9999 to it (a cheap, conservative test on the rendered text)
    joined = "\n" + "\n".join(out)
    if "\n0001-" in joined or "\n9999-" in joined:
        raise _Unsupported
    return out


def _lengths(out: list[str], allowed: frozenset[int]) -> list[str]:
    if not set(map(len, out)) <= allowed:
        raise _Unsupported
    return out


# The renderers call the type's own slot (``int.__repr__``, ``datetime.isoformat``, ...):
# a value of another type raises TypeError (the caller then looks at the column's types);
# subclasses render as their base type, which is what asyncpg's binary encoders send too
# (``True`` in an integer column is 1, a ``datetime`` in a date column its date).

def _ints(values: Sequence[Any]) -> Sequence[str]:
    try:
        return list(map(int.__repr__, values))
    except ValueError:  # more digits than int_max_str_digits
        raise _Unsupported from None


def _decimals(values: Sequence[Any]) -> Sequence[str]:
    out = list(map(Decimal.__str__, values))
    if "sNaN" in "".join(out):
        raise _Unsupported
    return out


def _naive_datetimes(values: Sequence[Any]) -> Sequence[str]:
    out = list(map(dt.datetime.isoformat, values))
    # naive: 19 or 26 characters; an aware value (the server would drop its offset, asyncpg
    # refuses it) is longer
    return _no_edge_years(_lengths(out, frozenset({19, 26})))


def _aware_datetimes(values: Sequence[Any]) -> Sequence[str]:
    out = list(map(dt.datetime.isoformat, values))
    # '+HH:MM' offsets only (the server takes no offset seconds); naive values are shorter
    return _no_edge_years(_lengths(out, frozenset({25, 32})))


def _dates(values: Sequence[Any]) -> Sequence[str]:
    return _no_edge_years(_lengths(list(map(dt.date.isoformat, values)), frozenset({10})))


def _times(values: Sequence[Any]) -> Sequence[str]:
    return _lengths(list(map(dt.time.isoformat, values)), frozenset({8, 15}))  # naive only


def _bools(values: Sequence[Any]) -> Sequence[str]:
    if set(map(type, values)) != {bool}:
        raise TypeError  # asyncpg takes only bools (1 and 0 are not)
    return list(map(_BOOL.__getitem__, values))


def _floats(values: Sequence[Any]) -> Sequence[str]:
    return list(map(float.__repr__, values))


def _uuids(values: Sequence[Any]) -> Sequence[str]:
    if set(map(type, values)) != {uuid.UUID}:
        raise TypeError  # UUID.__str__ is Python code: it checks no type
    return list(map(uuid.UUID.__str__, values))


_Render = Callable[[Sequence[Any]], Sequence[str]]
_RENDER: dict[tuple[type, str], _Render] = {}
for _t in INT_TYPES - {"numeric"}:
    _RENDER[(int, _t)] = _RENDER[(bool, _t)] = _ints  # asyncpg sends True as 1 too
_RENDER[(int, "numeric")] = _ints
for _t in TEXT_TYPES:
    _RENDER[(str, _t)] = _strs
_RENDER.update({
    (bool, "boolean"): _bools,
    (float, "double precision"): _floats,
    (float, "float8"): _floats,
    (Decimal, "numeric"): _decimals,
    (dt.datetime, "timestamp without time zone"): _naive_datetimes,
    (dt.datetime, "timestamp"): _naive_datetimes,
    (dt.datetime, "timestamp with time zone"): _aware_datetimes,
    (dt.datetime, "timestamptz"): _aware_datetimes,
    (dt.date, "date"): _dates,
    (dt.datetime, "date"): _dates,  # its date, as asyncpg sends it
    (dt.time, "time without time zone"): _times,
    (dt.time, "time"): _times,
    (uuid.UUID, "uuid"): _uuids,
})
_BASES = frozenset(t for _, t in _RENDER)


def renderable(natives: Sequence[str]) -> bool:
    """Whether some Python type renders into every one of these target types."""
    return all(base_type(n) in _BASES for n in natives)


class _DateText(dict[int, str]):
    """``date.toordinal()`` -> ``'YYYY-MM-DD'`` (bounded: cleared past 20,000 dates)."""

    def __missing__(self, ordinal: int) -> str:
        if len(self) >= 20_000:
            self.clear()
        text = self[ordinal] = dt.date.fromordinal(ordinal).isoformat()
        return text


class _MinuteText(dict[tuple[int, int], str]):
    """``(hour, minute)`` -> ``'THH:MM:'`` (at most 1,440 entries)."""

    def __missing__(self, hm: tuple[int, int]) -> str:
        text = self[hm] = f"T{hm[0]:02d}:{hm[1]:02d}:"
        return text


_DATE_TEXT = _DateText()
_MINUTE_TEXT = _MinuteText()
_SECOND_TEXT = tuple(f"{s:02d}" for s in range(60))
_hm = attrgetter("hour", "minute")
_second = attrgetter("second")
_microsecond = attrgetter("microsecond")
_tzinfo = attrgetter("tzinfo")
_YEAR_2 = dt.date(2, 1, 1).toordinal()
_YEAR_9999 = dt.date(9999, 1, 1).toordinal()


def _whole_second_parts(values: Sequence[Any]) -> list[Sequence[str]] | None:
    """Naive datetimes without microseconds as three parts per value (``YYYY-MM-DD``,
    ``THH:MM:``, ``SS``: the text ``datetime.isoformat()`` gives) from small caches, about a
    third of the cost of ``isoformat`` (which formats seven numbers through ``printf``);
    ``None`` when a value has microseconds or a time zone (``isoformat`` then renders)."""
    if any(map(_microsecond, values)) or any(map(_tzinfo, values)):
        return None
    ordinals = list(map(dt.datetime.toordinal, values))
    if min(ordinals) < _YEAR_2 or max(ordinals) >= _YEAR_9999:
        raise _Unsupported  # years 1 and 9999: see _no_edge_years
    return [list(map(_DATE_TEXT.__getitem__, ordinals)),
            list(map(_MINUTE_TEXT.__getitem__, map(_hm, values))),
            list(map(_SECOND_TEXT.__getitem__, map(_second, values)))]


_PARTS: dict[tuple[type, str], Callable[[Sequence[Any]], list[Sequence[str]] | None]] = {
    (dt.datetime, "timestamp without time zone"): _whole_second_parts,
    (dt.datetime, "timestamp"): _whole_second_parts,
}


def render_column(values: Sequence[Any], native: str) -> list[Sequence[str]]:
    """One column's values as COPY text fields (``\\N`` for ``None``), in one or more
    parts: field ``i`` is the concatenation of ``part[i]`` over the parts.

    :raises _Unsupported: the text path cannot render this column exactly.
    """
    base = base_type(native)
    if values and values[0] is not None:
        key = (type(values[0]), base)
        render = _RENDER.get(key)
        if render is not None:
            split = _PARTS.get(key)
            try:
                if split is not None:
                    parts = split(values)
                    if parts is not None:
                        return parts
                return [render(values)]  # the common case: one type, no NULLs
            except (TypeError, AttributeError):
                pass
    return [_render_mixed(values, base)]


def _render_mixed(values: Sequence[Any], base: str) -> Sequence[str]:
    kinds = set(map(type, values))
    has_null = type(None) in kinds
    if has_null:
        kinds.discard(type(None))
    if not kinds:
        return [NULL] * len(values)
    renders = {_RENDER.get((k, base)) for k in kinds}
    if len(renders) != 1:
        raise _Unsupported  # e.g. Decimal and int in one numeric column
    render = renders.pop()
    if render is None:
        raise _Unsupported
    try:
        if not has_null:
            return render(values)
        present = render([v for v in values if v is not None])
    except TypeError:
        raise _Unsupported from None
    it = iter(present)
    return [NULL if v is None else next(it) for v in values]


def encode_columns(columns: Sequence[Sequence[Any]], natives: Sequence[str]) -> bytes | None:
    """COPY text data for the rows made of ``columns`` (one sequence of values per target
    column, target types ``natives``), or ``None`` when some column is not renderable."""
    if not columns or not columns[0]:
        return None
    try:
        fields = [render_column(c, n) for c, n in zip(columns, natives, strict=True)]
    except _Unsupported:
        return None
    n = len(columns[0])
    if any(len(p) != n for f in fields for p in f):
        raise ValueError("columns of different lengths")
    # interleave field parts and separators in one list and join once: no per-row tuple
    # or string is built
    k = sum(map(len, fields)) + len(fields)
    parts: list[str] = [""] * (n * k)
    tab = ["\t"] * n
    slot = 0
    for f in fields:
        for p in f:
            parts[slot::k] = p
            slot += 1
        parts[slot::k] = tab
        slot += 1
    parts[k - 1::k] = ["\n"] * n
    try:
        return "".join(parts).encode()
    except UnicodeEncodeError:  # lone surrogates: binary reports them
        return None


def encode_text(records: Sequence[Sequence[Any]], natives: Sequence[str]) -> bytes | None:
    """COPY text data for ``records`` (sequences in target-column order), or ``None``."""
    if not records:
        return None
    return encode_columns(list(zip(*records, strict=True)), natives)
