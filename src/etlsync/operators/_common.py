"""What the stateful operators share: durations, event time, state caps, rejected rows."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, Literal

from etlsync.core.batch import Batch, Row
from etlsync.core.errors import ConfigError, DataError, EtlsyncError
from etlsync.core.stages import StageContext

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_UNITS = {"us": 1, "ms": 1000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000,
          "d": 86_400_000_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*$")

RejectPolicy = Literal["drop", "dead_letter", "side_output", "fail"]


class StateLimitExceeded(EtlsyncError):
    """A stateful operator's state passed its cap (``max_state``)."""


class RowsRejected(EtlsyncError):
    """An operator told to fail on a rejected row (late, failing a rule, a lookup miss)
    stops the run (never retried row by row: the operator's state stays consistent)."""


def duration_us(value: Any, what: str) -> int:
    """``value`` (seconds as a number, a ``timedelta``, or ``"500ms"``, ``"10s"``, ``"5m"``,
    ``"1h"``, ``"1d"``) in microseconds."""
    if isinstance(value, dt.timedelta):
        return value // _US
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a duration, not {value!r}")
    if isinstance(value, int | float):
        return round(value * 1_000_000)
    m = _DURATION.match(str(value))
    if m is None:
        raise ConfigError(f"{what}: {value!r} is not a duration (e.g. 30, '500ms', '10s', "
                          "'5m', '1h', '1d')")
    return round(float(m.group(1)) * _UNITS[m.group(2) or "s"])


class EventTime:
    """Event times as integer microseconds since the epoch, and back in the column's kind.

    A column holds ``datetime`` values (naive ones are taken as UTC), ``date`` values or
    numbers (epoch seconds). :meth:`value` renders a window bound in the kind first seen.
    """

    __slots__ = ("column", "kind")

    def __init__(self, column: str) -> None:
        self.column = column
        self.kind: str | None = None

    def micros(self, v: Any, stream: str, index: int) -> int:
        if isinstance(v, dt.datetime):
            if v.tzinfo is None:
                self.kind = self.kind or "naive"
                return (v - _EPOCH) // _US
            self.kind = self.kind or "aware"
            return (v - _EPOCH_UTC) // _US
        if isinstance(v, dt.date):
            self.kind = self.kind or "date"
            return (dt.datetime(v.year, v.month, v.day) - _EPOCH) // _US
        if isinstance(v, int | float) and not isinstance(v, bool):
            self.kind = self.kind or "number"
            return round(v * 1_000_000)
        raise DataError(f"stream {stream!r}, row {index}: event time column {self.column!r} "
                        f"holds {v!r}; expected a datetime, a date or epoch seconds",
                        column=self.column, value=v)

    def micros_all(self, values: Sequence[Any], stream: str) -> list[int]:
        """:meth:`micros` of every value (whole columns of naive datetimes or numbers in one
        comprehension)."""
        first = values[0] if values else None
        try:
            if type(first) is dt.datetime and first.tzinfo is None and self.kind != "aware":
                epoch, us = _EPOCH, _US
                out = [(v - epoch) // us for v in values]  # TypeError on any other kind
                self.kind = self.kind or "naive"
                return out
        except TypeError:
            pass
        micros = self.micros
        return [micros(v, stream, i) for i, v in enumerate(values)]

    def value(self, us: int) -> Any:
        if self.kind == "aware":
            return _EPOCH_UTC + dt.timedelta(microseconds=us)
        if self.kind == "date" and us % 86_400_000_000 == 0:
            return (_EPOCH + dt.timedelta(microseconds=us)).date()
        if self.kind == "number":
            return us / 1_000_000 if us % 1_000_000 else us // 1_000_000
        return _EPOCH + dt.timedelta(microseconds=us)

    def state(self) -> str | None:
        return self.kind

    def restore(self, kind: str | None) -> None:
        self.kind = kind


def key_getter(columns: Sequence[str]) -> Any:
    """A function from a row dict to its key tuple at ``columns`` (``None`` if absent)."""
    cols = tuple(columns)
    if len(cols) == 1:
        c = cols[0]
        return lambda r: (r.get(c),)
    return lambda r: tuple(r.get(c) for c in cols)


def check_columns(where: str, given: Any, option: str) -> list[str]:
    """A list of column names from ``given`` (a string is one column)."""
    if isinstance(given, str):
        return [given]
    cols = list(given or ())
    if not all(isinstance(c, str) and c for c in cols):
        raise ConfigError(f"{where}: {option} must be column names, got {given!r}")
    return cols


def check_reject(where: str, policy: str, allowed: Sequence[str]) -> None:
    if policy not in allowed:
        raise ConfigError(f"{where}: {policy!r} is not one of {', '.join(allowed)}")


class Rejects:
    """Rows an operator turns away, with the reason: dropped, dead-lettered, emitted on a
    side-output stream (``<stream>.<suffix>`` with a ``_reason`` column) or an error."""

    def __init__(self, stage: str, policy: str, dead_letter: Any, suffix: str) -> None:
        self.stage = stage
        self.policy = policy
        self.dead_letter = dead_letter
        self.suffix = suffix
        self.pipeline = ""
        self.count = 0
        self.preview = False
        self._opened = False

    async def open(self, context: StageContext) -> None:
        self.bind(context)
        if self.dead_letter is None and self.policy == "dead_letter":
            self.dead_letter = context.dead_letter
        if self.policy == "dead_letter" and not self.preview:
            if self.dead_letter is None:
                raise ConfigError(f"{self.stage}: rows go to the dead-letter sink, but there is "
                                  "none: pass dead_letter=... or give the job an "
                                  "errors.dead_letter sink")
            if not self._opened:
                await self.dead_letter.open()
                self._opened = True

    def bind(self, context: StageContext) -> None:
        """Take the pipeline's name, the stage's unique name and the dry-run flag."""
        self.pipeline, self.preview = context.pipeline, context.preview
        self.stage = context.stage or self.stage

    async def close(self) -> None:
        if self._opened and self.dead_letter is not None:
            self._opened = False
            await self.dead_letter.close()

    async def reject(self, batch: Batch, rows: list[Row], reasons: list[str],
                     error_type: str = "DataError") -> Batch | None:
        """Handle ``rows``; returns the side-output batch to emit, if any."""
        if not rows:
            return None
        self.count += len(rows)
        if self.policy == "fail":
            raise RowsRejected(f"{self.stage}: stream {batch.stream!r}: {reasons[0]} "
                               f"(row {rows[0]!r}; {len(rows)} row(s) in this batch)")
        if self.policy == "dead_letter":
            if self.preview:
                return None  # a dry run writes nothing
            from etlsync.resilience.deadletter import DeadLetter

            letters = [DeadLetter(row=dict(r), stage=self.stage, error_type=error_type,
                                  error=why, pipeline=self.pipeline, stream=batch.stream,
                                  reason=why, position=batch.position)
                       for r, why in zip(rows, reasons, strict=True)]
            await self.dead_letter.write(letters)
            return None
        if self.policy == "side_output":
            stream = f"{batch.stream}.{self.suffix}" if batch.stream else self.suffix
            return Batch([{**r, "_reason": why} for r, why in zip(rows, reasons, strict=True)],
                         stream, batch.position)
        return None


def cap_error(stage: str, size: int, cap: int, what: str) -> StateLimitExceeded:
    return StateLimitExceeded(
        f"{stage}: state holds {size:,} {what}, over its cap max_state={cap:,}: raise "
        "max_state, shorten the window or the lateness, or narrow the key")


def keep_rows(batch: Batch, keep: list[int]) -> Batch:
    """``batch`` with only the rows at ``keep`` (in order), in the batch's own form; change
    kinds and old images follow their rows."""
    if len(keep) == len(batch):
        return batch.with_rows(batch.rows) if batch.form == "rows" else _same(batch)
    ops = None if batch.ops is None else [batch.ops[i] for i in keep]
    before = None if batch.before is None else [batch.before[i] for i in keep]
    if batch.form == "arrow":
        import pyarrow as pa

        return batch.with_arrow(batch.arrow.take(pa.array(keep, pa.int64())), ops, before)
    if batch.form == "records":
        records = batch.records
        assert records is not None and batch.columns is not None
        return batch.with_records(batch.columns, [records[i] for i in keep], ops, before)
    rows = batch.rows
    return batch.with_rows([rows[i] for i in keep], ops, before)


def _same(batch: Batch) -> Batch:
    if batch.form == "arrow":
        return batch.with_arrow(batch.arrow)
    assert batch.columns is not None and batch.records is not None
    return batch.with_records(batch.columns, batch.records)
