"""The :class:`Cast` operator: convert column values (often strings from files) to typed values.

Supported target types (the logical :class:`~etlsync.core.schema.ColumnType` names):
``integer``, ``float``, ``decimal``, ``boolean``, ``date``, ``time``, ``datetime`` (naive),
``timestamp`` (aware; naive input is taken as UTC), ``string``.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from operator import attrgetter, itemgetter
from typing import Any

from etlsync.core.batch import Batch, Op, Row
from etlsync.core.errors import ConfigError, DataError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Operator, OperatorOutput

_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off"})
UTC = dt.UTC


def _to_int(v: Any, fmt: str | None) -> int:
    if isinstance(v, float | Decimal):
        if v != int(v):
            raise ValueError("has a fractional part")
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        if "_" in s:  # Python accepts "1_000"; a data file does not mean that
            raise ValueError("not an integer")
        return int(s)
    return int(v)


def _to_float(v: Any, fmt: str | None) -> float:
    return float(v.strip()) if isinstance(v, str) else float(v)


def _to_decimal(v: Any, fmt: str | None) -> Decimal:
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, int | Decimal):
        return Decimal(v)
    s = str(v).strip()
    if fmt:  # thousands separator to drop, e.g. "," for "1,234.50"
        s = s.replace(fmt, "")
    try:
        d = Decimal(s)
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
    if not d.is_finite():
        raise ValueError("not a finite number")
    return d


def _to_bool(v: Any, fmt: str | None) -> bool:
    if isinstance(v, int | float):
        if v in (0, 1):
            return bool(v)
        raise ValueError("only 0 and 1 are booleans")
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError("expected true/false, yes/no, 1/0, on/off")


def _parse_dt(v: Any, fmt: str | None) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day)
    if isinstance(v, int | float) and not isinstance(v, bool):
        return dt.datetime.fromtimestamp(v, UTC)
    s = str(v).strip()
    if fmt:
        return dt.datetime.strptime(s, fmt)
    return dt.datetime.fromisoformat(s)


def _to_datetime(v: Any, fmt: str | None) -> dt.datetime:
    d = _parse_dt(v, fmt)
    return d.astimezone(UTC).replace(tzinfo=None) if d.tzinfo is not None else d


def _to_timestamp(v: Any, fmt: str | None) -> dt.datetime:
    d = _parse_dt(v, fmt)
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d


def _to_date(v: Any, fmt: str | None) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    s = str(v).strip()
    if fmt:
        return dt.datetime.strptime(s, fmt).date()
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        return dt.datetime.fromisoformat(s).date()  # "2024-05-01T00:00:00"


def _to_time(v: Any, fmt: str | None) -> dt.time:
    if isinstance(v, dt.datetime):
        return v.time()
    s = str(v).strip()
    return dt.datetime.strptime(s, fmt).time() if fmt else dt.time.fromisoformat(s)


def _to_string(v: Any, fmt: str | None) -> str:
    if isinstance(v, bytes):
        return v.decode()
    if fmt and isinstance(v, dt.date | dt.time):
        return v.strftime(fmt)
    return v.isoformat() if isinstance(v, dt.date | dt.time) else str(v)


def _int_str(s: str) -> int:
    if "_" in s:
        raise ValueError("not an integer")
    return int(s)


def _decimal_str(s: str) -> Decimal:
    d = Decimal(s)
    if not d.is_finite():
        raise ValueError("not a finite number")
    return d


def _datetime_str(s: str) -> dt.datetime:
    d = dt.datetime.fromisoformat(s)
    return d if d.tzinfo is None else d.astimezone(UTC).replace(tzinfo=None)


def _fast(ctype: ColumnType, fmt: str | None) -> Callable[[str], Any] | None:
    """A converter for the common case (a non-empty string, default format); on any error
    the general converter decides."""
    if ctype is ColumnType.INTEGER:
        return _int_str
    if ctype is ColumnType.FLOAT:
        return float
    if fmt:
        return None
    fast: dict[ColumnType, Callable[[str], Any]] = {
        ColumnType.DECIMAL: _decimal_str, ColumnType.DATE: dt.date.fromisoformat,
        ColumnType.DATETIME: _datetime_str,
    }
    return fast.get(ctype)


def _ints(values: Sequence[str]) -> list[Any]:
    if "_" in "".join(values):
        raise ValueError("not an integer")
    return list(map(int, values))


def _floats(values: Sequence[str]) -> list[Any]:
    "".join(values)  # TypeError unless all are strings (float() takes numbers too)
    return list(map(float, values))


def _decimals(values: Sequence[str]) -> list[Any]:
    joined = "".join(values)  # TypeError unless all are strings (Decimal() takes numbers too)
    out = list(map(Decimal, values))
    # only NaN, sNaN, Inf and Infinity spell an "n": without one every value is finite
    if ("n" in joined or "N" in joined) and not all(map(Decimal.is_finite, out)):
        raise ValueError("not a finite number")
    return out


def _dates(values: Sequence[str]) -> list[Any]:
    return list(map(dt.date.fromisoformat, values))


_tzinfo = attrgetter("tzinfo")


def _datetimes(values: Sequence[str]) -> list[Any]:
    out = list(map(dt.datetime.fromisoformat, values))
    if list(map(_tzinfo, out)).count(None) != len(out):
        raise ValueError("has a time zone")
    return out


def _fast_column(ctype: ColumnType, fmt: str | None) -> Callable[[Sequence[str]], list[Any]] | None:
    """A whole-column converter for the commonest case (every value a string that the
    per-value fast converter takes); it raises when any value is not that case (TypeError
    when some value is not a string), and then the per-value loop decides value by value,
    with the same results."""
    if ctype is ColumnType.INTEGER:
        return _ints
    if ctype is ColumnType.FLOAT:
        return _floats
    if fmt:
        return None
    fast: dict[ColumnType, Callable[[Sequence[str]], list[Any]]] = {
        ColumnType.DECIMAL: _decimals, ColumnType.DATE: _dates,
        ColumnType.DATETIME: _datetimes,
    }
    return fast.get(ctype)


def _convert_column(rows: list[Row], col: str,
                    convert: Callable[[Sequence[str]], list[Any]]) -> bool:
    """Convert ``col`` in every row at once; ``False`` (rows untouched) when some row lacks
    the column, holds something other than a string, or a value does not convert."""
    try:
        values = list(map(itemgetter(col), rows))
    except KeyError:
        return False
    if set(map(type, values)) != {str}:
        return False
    try:
        out = convert(values)
    except (ValueError, TypeError, ArithmeticError):
        return False
    for r, v in zip(rows, out, strict=True):
        r[col] = v
    return True


_Conv = Callable[[Any, str | None], Any]
CONVERTERS: dict[ColumnType, tuple[_Conv, type | tuple[type, ...]]] = {
    ColumnType.INTEGER: (_to_int, int),
    ColumnType.FLOAT: (_to_float, float),
    ColumnType.DECIMAL: (_to_decimal, Decimal),
    ColumnType.BOOLEAN: (_to_bool, bool),
    ColumnType.DATE: (_to_date, dt.date),
    ColumnType.TIME: (_to_time, dt.time),
    ColumnType.DATETIME: (_to_datetime, dt.datetime),
    ColumnType.TIMESTAMP: (_to_timestamp, dt.datetime),
    ColumnType.STRING: (_to_string, str),
}
_TZ_SENSITIVE = (ColumnType.DATETIME, ColumnType.TIMESTAMP)
CAST_TYPES = tuple(t.value for t in CONVERTERS)


def parse_type(name: str | ColumnType, column: str) -> ColumnType:
    """The :class:`ColumnType` called ``name``, or a ConfigError naming the column."""
    try:
        t = ColumnType(name)
    except ValueError:
        t = None
    if t is None or t not in CONVERTERS:
        close = difflib.get_close_matches(str(name), CAST_TYPES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"cast: column {column!r}: unknown type {name!r}{hint}; "
                          f"expected one of {', '.join(CAST_TYPES)}")
    return t


def _convert_value(v: Any, conv: _Conv, pytype: type | tuple[type, ...], fmt: str | None,
                   blank_null: bool, ctype: ColumnType, fast: Callable[[str], Any] | None) -> Any:
    """One non-null value converted: the fast converter for a non-empty string, the value as
    it is when already of the type, ``None`` for a blank string where blanks are null, else
    the general converter (which raises on a bad value)."""
    if fast is not None and type(v) is str and v:
        try:
            return fast(v)
        except (ValueError, TypeError, ArithmeticError):
            pass
    if type(v) is pytype and ctype not in _TZ_SENSITIVE:
        return v  # already typed (bool is not int here: type() is exact)
    if blank_null and type(v) is str and not v.strip():
        return None
    return conv(v, fmt)


class Cast(Operator):
    """Convert the values of some columns to the given types.

    :param types: ``{column: type}``, types by name (``"decimal"``) or :class:`ColumnType`.
    :param formats: ``{column: format}``: a ``strptime`` format for dates, times and
        datetimes (default ISO 8601), a ``strftime`` format for dates cast to strings, or a
        thousands separator to drop for decimals.
    :param empty_as_null: an empty (or blank) string becomes ``None`` for every target
        type except ``string``.
    :param on_error: ``"fail"`` raises :class:`DataError` naming the stream, the row, the
        column and the value; ``"skip"`` drops the row and counts it in :attr:`rejected`.
    :param copy: convert copies of the rows (default). ``False`` converts in place: only
        when the rows were made by an earlier operator and nothing else holds them (the job
        builder does this after ``select`` and ``rename``).

    ``None`` stays ``None``; a value that already has the target type is kept as is.
    """

    def __init__(self, types: Mapping[str, str | ColumnType], *,
                 formats: Mapping[str, str] | None = None, empty_as_null: bool = True,
                 on_error: str = "fail", copy: bool = True, name: str = "cast") -> None:
        if not isinstance(types, Mapping) or not types:
            raise ConfigError("cast: needs a non-empty mapping {column: type}")
        if on_error not in ("fail", "skip"):
            raise ConfigError(f"cast: on_error must be 'fail' or 'skip', got {on_error!r}")
        formats = dict(formats or {})
        unknown = sorted(set(formats) - set(types))
        if unknown:
            raise ConfigError(f"cast: formats given for column(s) not cast: {', '.join(unknown)}")
        self.types = {c: parse_type(t, c) for c, t in types.items()}
        self.formats = formats
        self.empty_as_null = empty_as_null
        self.on_error = on_error
        self.copy = copy
        self.name = name
        self.rejected = 0
        """Rows dropped because a value did not convert (with ``on_error="skip"``)."""
        self._seen: dict[str, int] = {}
        self._plan = [
            (col, CONVERTERS[t][0], CONVERTERS[t][1], formats.get(col),
             t is not ColumnType.STRING and empty_as_null, t, _fast(t, formats.get(col)),
             _fast_column(t, formats.get(col)))
            for col, t in self.types.items()
        ]

    def transform_schema(self, schema: Schema) -> Schema:
        """The schema of the rows this operator emits."""
        cols = tuple(Column(c.name, self.types[c.name], c.nullable, c.native)
                     if c.name in self.types else c for c in schema.columns)
        missing = tuple(Column(n, t) for n, t in self.types.items() if n not in schema)
        return Schema(cols + missing, schema.primary_key)

    async def process(self, batch: Batch) -> OperatorOutput:
        if batch.arrow is not None:
            out = await self._process_arrow(batch, batch.arrow)
            if out is not None:
                return out
        if batch.records is not None and batch.columns is not None:
            return self._process_records(batch, batch.columns, batch.records)
        base = self._seen.get(batch.stream, 0)
        self._seen[batch.stream] = base + len(batch)
        # the input rows are never mutated, unless the caller knows they are this batch's own
        rows = [r.copy() for r in batch.rows] if self.copy else batch.rows
        bad: set[int] = set()
        skip = self.on_error == "skip"
        # column by column: one tight loop per column; a fast converter for non-empty
        # strings, the general one (blanks, other types, odd formats) when it fails
        for col, conv, pytype, fmt, blank_null, ctype, fast, fast_column in self._plan:
            if fast_column is not None and rows and _convert_column(rows, col, fast_column):
                continue
            for i, r in enumerate(rows):
                v = r.get(col)
                if v is None:
                    continue
                try:
                    r[col] = _convert_value(v, conv, pytype, fmt, blank_null, ctype, fast)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    if not skip:
                        raise self._error(col, v, ctype, exc, batch, batch.rows[i], i,
                                          base) from exc
                    bad.add(i)
        schema = None if batch.schema is None else self.transform_schema(batch.schema)
        if not bad:
            return batch.with_rows(rows, schema=schema)
        keep, ops, before = self._reject(batch, len(rows), bad)
        return batch.with_rows([rows[i] for i in keep], ops=ops, before=before, schema=schema)

    async def _process_arrow(self, batch: Batch, table: Any) -> Batch | None:
        """Arrow form: whole columns converted in C where the results are proven equal to
        the record path's (see :mod:`etlsync.operators.cast_arrow`), else ``None``."""
        from etlsync.operators.cast_arrow import cast_table  # an arrow batch: pyarrow is there

        out = await cast_table(table, self.types, self.formats, self.empty_as_null)
        if out is None:
            return None
        self._seen[batch.stream] = self._seen.get(batch.stream, 0) + int(out.num_rows)
        schema = None if batch.schema is None else self.transform_schema(batch.schema)
        return batch.with_arrow(out, schema=schema)

    def _process_records(self, batch: Batch, names: tuple[str, ...],
                         records: list[Sequence[Any]]) -> OperatorOutput:
        """Record form: one column at a time (transposed once; the input records are never
        touched), the same conversions and results as the dict path, no dicts built."""
        base = self._seen.get(batch.stream, 0)
        self._seen[batch.stream] = base + len(records)
        schema = None if batch.schema is None else self.transform_schema(batch.schema)
        if not records:
            return batch.with_records(names, records, schema=schema)
        cols: list[Sequence[Any]] = list(zip(*records, strict=True))
        index = {n: i for i, n in enumerate(names)}
        skip = self.on_error == "skip"
        bad: set[int] = set()
        for col, conv, pytype, fmt, blank_null, ctype, fast, fast_column in self._plan:
            j = index.get(col)
            if j is None:
                continue  # as in the dict path: a missing column stays missing
            values = cols[j]
            if fast_column is not None:
                # each column converter raises TypeError unless every value is a string
                try:
                    cols[j] = fast_column(values)
                    continue
                except (ValueError, TypeError, ArithmeticError):
                    pass
            out = list(values)
            for i, v in enumerate(out):
                if v is None:
                    continue
                try:
                    out[i] = _convert_value(v, conv, pytype, fmt, blank_null, ctype, fast)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    if not skip:
                        row = dict(zip(names, records[i], strict=True))
                        raise self._error(col, v, ctype, exc, batch, row, i, base) from exc
                    bad.add(i)
            cols[j] = out
        out_records: list[Sequence[Any]] = list(zip(*cols, strict=True))
        if not bad:
            return batch.with_records(names, out_records, schema=schema)
        keep, ops, before = self._reject(batch, len(out_records), bad)
        return batch.with_records(names, [out_records[i] for i in keep], ops=ops,
                                  before=before, schema=schema)

    def _reject(self, batch: Batch, n: int, bad: set[int]
                ) -> tuple[list[int], list[Op] | None, list[Row | None] | None]:
        """The indices of the ``n`` rows to keep (all but ``bad``, counted as rejected) and
        the batch's change kinds and old images for them."""
        keep = [i for i in range(n) if i not in bad]
        self.rejected += n - len(keep)
        if batch.ops is None:
            return keep, None, None
        before = None if batch.before is None else [batch.before[i] for i in keep]
        return keep, [batch.ops[i] for i in keep], before

    def _error(self, column: str, value: Any, ctype: ColumnType, cause: Exception,
               batch: Batch, row: Row, index: int, base: int) -> DataError:
        key = ""
        if batch.schema is not None and batch.schema.primary_key:
            key = ", key " + ", ".join(f"{k}={row.get(k)!r}" for k in batch.schema.primary_key)
        fmt = self.formats.get(column)
        expected = ctype.value + (f" (format {fmt!r})" if fmt else "")
        return DataError(
            f"cast: stream {batch.stream!r}, row {base + index + 1}{key}: column {column!r}: "
            f"cannot convert {value!r} to {expected}: {cause}",
            column=column, value=value, row=base + index + 1,
        )
