"""Group-by aggregation over the whole input or over event-time windows (docs/concepts/
operators.md, "aggregate")."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any, Literal

from etlsync.core.batch import Batch, Op
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError, DataError
from etlsync.core.schema import Column, ColumnType, Schema, infer_type
from etlsync.core.stages import Operator, OperatorOutput, StageContext
from etlsync.operators import _accumulate as acc_fns
from etlsync.operators._common import (
    EventTime,
    Rejects,
    cap_error,
    check_columns,
    check_reject,
    duration_us,
)
from etlsync.operators._state import pack_columns, unpack_columns
from etlsync.operators.windows import (
    FixedWindows,
    Hopping,
    Session,
    Sessions,
    Tumbling,
    Window,
    window_from_spec,
)

Emit = Literal["close", "changelog"]
_TYPES = {"count": ColumnType.INTEGER, "count_distinct": ColumnType.INTEGER}
OUT_BATCH = 10_000


class Aggregate(Operator):
    """Group rows by ``group_by`` and compute ``aggregates`` (``{name: "sum(amount)"}``:
    count, count_distinct, sum, avg, min, max, first, last).

    Without ``window`` the whole input is one group set: results are emitted at the end of
    each pass of a finite source (or at the end of the stream), or, with
    ``emit="changelog"``, as upserts after every batch. With ``window`` (``Tumbling``,
    ``Hopping``, ``Session``, or their job-file mappings) rows are grouped by event time in
    ``time_column``; the watermark is the highest event time seen minus
    ``allowed_lateness``; a window closes once the watermark passes its end and is emitted
    (``emit="close"``) or has been kept up to date as a changelog keyed by group and
    ``window_start`` (``emit="changelog"``: updates an upsert sink applies idempotently;
    merged sessions are retracted with deletes). A row all of whose windows are closed is
    late: ``late`` drops it, sends it to the dead-letter sink, emits it on the side-output
    stream ``<stream>.late`` with a ``_reason`` column, or fails the run.

    The state (groups, open windows, watermark) goes into the pipeline's checkpoint
    (``STATEFUL``); ``max_state`` caps its entries (group/window pairs plus distinct values):
    passing it is a :class:`~etlsync.operators.StateLimitExceeded` error.
    Arrow-form batches of a whole-input aggregate are grouped by pyarrow.
    """

    capabilities = frozenset({Capability.STATEFUL})

    def __init__(self, group_by: Sequence[str] | str, aggregates: dict[str, Any], *,
                 window: Window | dict[str, Any] | None = None, time_column: str | None = None,
                 allowed_lateness: Any = 0, late: str = "drop", emit: str = "close",
                 max_state: int = 1_000_000, dead_letter: Any = None,
                 window_columns: Sequence[str] = ("window_start", "window_end"),
                 name: str = "aggregate") -> None:
        self.name = name
        where = f"aggregate {name!r}"
        self.group_by = check_columns(where, group_by, "group_by")
        self.specs = acc_fns.parse_aggregates(aggregates, f"{where}: aggregates")
        self.window = window_from_spec(window)
        check_reject(where, emit, ("close", "changelog"))
        check_reject(where, late, ("drop", "dead_letter", "side_output", "fail"))
        self.emit = emit
        if self.window is not None and not time_column:
            raise ConfigError(f"{where}: a window needs time_column (the event time)")
        self.time = EventTime(time_column) if time_column else None
        self.lateness = duration_us(allowed_lateness, f"{where}: allowed_lateness")
        self.max_state = max_state
        self.window_columns = tuple(window_columns)
        if self.window is not None and len(self.window_columns) != 2:
            raise ConfigError(f"{where}: window_columns names the start and end columns")
        names = [s.name for s in self.specs]
        clash = set(names) & set(self.group_by) | (
            set(names) & set(self.window_columns) if self.window is not None else set())
        if clash or len(set(names)) != len(names):
            raise ConfigError(f"{where}: output column names collide: {sorted(clash) or names}")
        self.rejects = Rejects(f"op:{name}", late, dead_letter, "late")
        self._new = acc_fns.new_accumulator(self.specs)
        self._slots = len(self._new())
        self._distinct_slots = [sp.slot for sp in self.specs if sp.function == "count_distinct"]
        self._fixed = FixedWindows(self.window) if isinstance(self.window, Tumbling | Hopping) \
            else None
        self._sessions = Sessions(self.window.micros()) if isinstance(self.window, Session) \
            else None
        self._schema: Schema | None = None
        self._bounds: dict[int, Any] = {}
        self.out_columns = (*self.group_by, *(self.window_columns if self.window else ()),
                            *names)
        self._reset()

    # -- state -------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.groups: dict[tuple[Any, ...], list[Any]] = {}
        """Fixed windows: (group..., window start) -> accumulator; no window: group -> acc."""
        self._starts: list[int] = []
        self._by_start: dict[int, list[tuple[Any, ...]]] = {}
        self.max_time: int | None = None
        if self._sessions is not None:
            self._sessions.by_group = {}
        if self.time is not None:
            self.time.kind = None

    @property
    def watermark(self) -> int | None:
        """Event time (microseconds) below which windows are complete."""
        return None if self.max_time is None else self.max_time - self.lateness

    def snapshot_state(self) -> Any:
        """The state, its groups packed column by column (:mod:`etlsync.operators._state`):
        a copy later batches do not change."""
        state: dict[str, Any] = {"v": 2, "max_time": self.max_time,
                                 "kind": None if self.time is None else self.time.state()}
        width = self._slots
        if self._sessions is not None:
            entries = [(*g, s[0], s[1], *s[2]) for g, ss in self._sessions.by_group.items()
                       for s in ss]
            kw = len(self.group_by) + 2
        else:
            entries = [(*k, *a) for k, a in self.groups.items()]
            kw = len(self.group_by) + (1 if self._fixed is not None else 0)
        columns = [list(c) for c in zip(*entries, strict=True)] if entries else \
            [[] for _ in range(kw + width)]
        for i in self._distinct_slots:  # sets are copied: later updates change them
            columns[kw + i] = [set(v) for v in columns[kw + i]]
        state["groups"] = pack_columns(columns)
        return state

    def restore_state(self, state: Any) -> None:
        self._reset()
        if not state:
            return
        self.max_time = state.get("max_time")
        if self.time is not None:
            self.time.restore(state.get("kind"))
        columns = unpack_columns(state["groups"])
        rows = list(zip(*columns, strict=True)) if columns and columns[0] else []
        width = self._slots
        if self._sessions is not None:
            kw = len(self.group_by)
            for r in rows:
                self._sessions.by_group.setdefault(tuple(r[:kw]), []).append(
                    [r[kw], r[kw + 1], list(r[kw + 2:])])
            for ss in self._sessions.by_group.values():
                ss.sort(key=lambda s: s[0])
            return
        kw = len(columns) - width
        self.groups = {tuple(r[:kw]): list(r[kw:]) for r in rows}
        if self._fixed is not None:
            for k in self.groups:
                self._track(k)

    def _track(self, key: tuple[Any, ...]) -> None:
        """Index a new window entry by its start (windows close in start order)."""
        start = key[-1]
        keys = self._by_start.get(start)
        if keys is None:
            keys = self._by_start[start] = []
            heapq.heappush(self._starts, start)
        keys.append(key)

    def state_size(self) -> int:
        n = len(self._sessions) if self._sessions is not None else len(self.groups)
        distinct = [s.slot for s in self.specs if s.function == "count_distinct"]
        if distinct:
            accs = ([s[2] for ss in self._sessions.by_group.values() for s in ss]
                    if self._sessions is not None else self.groups.values())
            n += sum(len(a[i]) for a in accs for i in distinct)
        return n

    def extra_metrics(self) -> dict[str, Any]:
        return {"state_entries": len(self._sessions) if self._sessions is not None
                else len(self.groups), "late_rows": self.rejects.count}

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self, context: StageContext) -> None:
        await self.rejects.open(context)

    async def close(self) -> None:
        await self.rejects.close()

    def transform_schema(self, schema: Schema) -> Schema | None:
        cols = [schema.column(c) if c in schema else Column(c) for c in self.group_by]
        key = list(self.group_by)
        if self.window is not None:
            assert self.time is not None
            tcol = schema.column(self.time.column) if self.time.column in schema else None
            ttype = tcol.type if tcol is not None else ColumnType.DATETIME
            cols += [Column(self.window_columns[0], ttype, False),
                     Column(self.window_columns[1], ttype, False)]
            key.append(self.window_columns[0])
        for s in self.specs:
            t = _TYPES.get(s.function) or (ColumnType.INTEGER if s.column is None else
                                           schema.column(s.column).type if s.column in schema
                                           else ColumnType.UNKNOWN)
            if s.function == "avg" and t == ColumnType.INTEGER:
                t = ColumnType.FLOAT
            cols.append(Column(s.name, t, s.function not in _TYPES))
        return Schema(tuple(cols), tuple(key) if self.emit == "changelog" else ())

    # -- processing ----------------------------------------------------------------------------
    async def process(self, batch: Batch) -> OperatorOutput:
        out: list[Batch] = []
        if len(batch):
            if batch.ops is not None and any(op is not Op.INSERT for op in batch.ops):
                raise DataError(f"aggregate {self.name!r}: stream {batch.stream!r} carries "
                                "updates or deletes; the aggregate counts inserted rows only "
                                "(aggregate the changes of an append-only stream)")
            if self.window is None:
                touched = self._whole(batch)
            elif self._sessions is not None:
                touched, side = await self._session_rows(batch)
                out.extend(side)
            else:
                touched, side = await self._fixed_rows(batch)
                out.extend(side)
            if self.emit == "changelog":
                out.extend(self._changelog(batch, touched))
            size = self.state_size()
            if size > self.max_state:
                raise cap_error(f"aggregate {self.name!r}", size, self.max_state,
                                "groups, windows and distinct values")
        if batch.end_of_pass:
            out.extend(self._close_all(batch))
        elif self.window is not None:
            out.extend(self._close(batch, self.watermark))
        return out

    async def flush(self) -> OperatorOutput:
        return self._close_all(Batch([]))

    def _whole(self, batch: Batch) -> dict[tuple[Any, ...], None]:
        groups, new = self.groups, self._new
        if batch.form == "arrow":
            keys, values = acc_fns.arrow_partials(batch.arrow, self.group_by, self.specs)
            acc_fns.merge_partials(self.specs, _accumulators(groups, keys, new), values)
            return dict.fromkeys(keys) if self.emit == "changelog" else {}
        keys = batch.view(self.group_by) if self.group_by else [()] * len(batch)
        staged: dict[tuple[Any, ...], list[Any]] = {}
        row_accs = _accumulators(staged, keys, new)
        acc_fns.update(self.specs, row_accs, self._columns(batch))
        for k, a in staged.items():
            cur = groups.get(k)
            if cur is None:
                groups[k] = a
            else:
                acc_fns.merge(self.specs, cur, a)
        return dict.fromkeys(staged)

    def _columns(self, batch: Batch) -> dict[str, Sequence[Any]]:
        cols = sorted({s.column for s in self.specs if s.column is not None})
        if not cols:
            return {}
        view = batch.view(cols)
        return {c: [r[i] for r in view] for i, c in enumerate(cols)}

    def _times(self, batch: Batch) -> list[int]:
        assert self.time is not None
        return self.time.micros_all([v for (v,) in batch.view([self.time.column])],
                                    batch.stream)

    def _advance(self, t: int) -> int | None:
        """Per-row watermark: lateness does not depend on where batches were cut."""
        if self.max_time is None or t > self.max_time:
            self.max_time = t
        return self.watermark

    async def _fixed_rows(self, batch: Batch) -> tuple[dict[Any, Any], list[Batch]]:
        assert self._fixed is not None
        times = self._times(batch)
        groups_of = batch.view(self.group_by) if self.group_by else [()] * len(batch)
        size, starts = self._fixed.size, self._fixed.starts
        staged: dict[tuple[Any, ...], list[Any]] = {}
        row_accs: list[list[Any]] = []
        rows_of: list[int] = []
        late: list[int] = []
        before = mt = self.max_time
        lateness, hop, new = self.lateness, self._fixed.hop, self._new
        for i, (t, g) in enumerate(zip(times, groups_of, strict=True)):
            prior = None if mt is None else mt - lateness  # the watermark before this row
            if mt is None or t > mt:
                mt = t
            if hop == size:  # tumbling: one window
                first = t - t % size
                live: Sequence[int] = () if prior is not None and first + size <= prior \
                    else (first,)
            else:
                live = [s for s in starts(t) if prior is None or s + size > prior]
            if not live:
                late.append(i)
                continue
            for s in live:
                k = (*g, s)
                a = staged.get(k)
                if a is None:
                    a = staged[k] = new()
                row_accs.append(a)
                rows_of.append(i)
        self.max_time = mt
        cols = self._columns(batch)
        try:  # values are checked and late rows handled before any state changes
            acc_fns.update(self.specs, row_accs, {c: [v[i] for i in rows_of]
                                                  for c, v in cols.items()})
            side = await self._late(batch, late, times)
        except BaseException:
            self.max_time = before
            raise
        for k, a in staged.items():
            cur = self.groups.get(k)
            if cur is None:
                self.groups[k] = a
                self._track(k)
            else:
                acc_fns.merge(self.specs, cur, a)
        return dict.fromkeys(staged), side

    async def _session_rows(self, batch: Batch) -> tuple[dict[Any, Any], list[Batch]]:
        """Rows into their groups' sessions; returns the sessions touched (by identity) with
        the starts of sessions merged away, and the side output."""
        sessions = self._sessions
        assert sessions is not None
        times = self._times(batch)
        groups_of = batch.view(self.group_by) if self.group_by else [()] * len(batch)
        cols = self._columns(batch)
        # values are checked first: sessions change row by row
        acc_fns.update(self.specs, [self._new() for _ in times], cols)
        touched: dict[int, tuple[tuple[Any, ...], list[Any]]] = {}
        retracted: list[tuple[tuple[Any, ...], int]] = []
        late: list[int] = []
        merge = lambda a, b: acc_fns.merge(self.specs, a, b)  # noqa: E731
        for i, (t, g) in enumerate(zip(times, groups_of, strict=True)):
            prior = self.watermark
            self._advance(t)
            session, merged = sessions.place(g, t, prior, self._new, merge)
            if session is None:
                late.append(i)
                continue
            acc_fns.update(self.specs, [session[2]], {c: [v[i]] for c, v in cols.items()})
            touched[id(session)] = (g, session)
            retracted.extend((g, start) for start in merged)
        side = await self._late(batch, late, times)
        return {"touched": touched, "retracted": retracted}, side

    async def _late(self, batch: Batch, late: list[int], times: list[int]) -> list[Batch]:
        if not late or self.rejects.policy == "drop":
            self.rejects.count += len(late)
            return []
        rows = batch.rows
        wm = self.watermark
        reasons = [f"late: event time {self.time.value(times[i]) if self.time else times[i]} "
                   f"is behind the watermark minus lateness (watermark "
                   f"{self.time.value(wm) if self.time and wm is not None else wm})"
                   for i in late]
        side = await self.rejects.reject(batch, [rows[i] for i in late], reasons)
        return [side] if side is not None else []

    # -- emission ------------------------------------------------------------------------------
    def _row(self, key: tuple[Any, ...], acc: list[Any], start: int | None = None,
             end: int | None = None) -> tuple[Any, ...]:
        """One output record, in the order of :attr:`out_columns`."""
        if start is None or end is None:
            return (*key, *acc_fns.results(self.specs, acc))
        return (*key, self._bound(start), self._bound(end), *acc_fns.results(self.specs, acc))

    def _bound(self, us: int) -> Any:
        """A window bound in the event time's own kind (cached: windows share bounds)."""
        cache = self._bounds
        found = cache.get(us)
        if found is None:
            assert self.time is not None
            if len(cache) > 4096:
                cache.clear()
            found = cache[us] = self.time.value(us)
        return found

    def _fixed_row(self, key: tuple[Any, ...], acc: list[Any]) -> tuple[Any, ...]:
        if self._fixed is None:
            return self._row(key, acc)
        start = key[-1]
        return self._row(key[:-1], acc, start, start + self._fixed.size)

    def _changelog(self, batch: Batch, touched: dict[Any, Any]) -> list[Batch]:
        rows: list[tuple[Any, ...]] = []
        ops: list[Op] = []
        if self._sessions is not None:
            gap, by_group = self._sessions.gap, self._sessions.by_group
            for g, start in dict.fromkeys(touched["retracted"]):
                if all(s[0] != start for s in by_group.get(g, ())):
                    rows.append(self._row(g, self._new(), start, start))
                    ops.append(Op.DELETE)
            live = {id(s) for ss in by_group.values() for s in ss}
            for sid, (g, session) in touched["touched"].items():
                if sid in live:
                    rows.append(self._row(g, session[2], session[0], session[1] + gap))
                    ops.append(Op.UPDATE)
        else:
            groups = self.groups
            for k in touched:
                rows.append(self._fixed_row(k, groups[k]))
                ops.append(Op.UPDATE)
        return self._batches(batch, rows, ops)

    def _close(self, batch: Batch, watermark: int | None) -> list[Batch]:
        """Emit (``close``) or forget (``changelog``) the windows the watermark passed."""
        rows: list[tuple[Any, ...]] = []
        if self._sessions is not None:
            for g, s in self._sessions.closed(watermark):
                rows.append(self._row(g, s[2], s[0], s[1] + self._sessions.gap))
        elif self._fixed is not None:
            starts, size = self._starts, self._fixed.size
            while starts and (watermark is None or starts[0] + size <= watermark):
                for k in self._by_start.pop(heapq.heappop(starts)):
                    rows.append(self._fixed_row(k, self.groups.pop(k)))
        else:
            rows = [self._row(k, a) for k, a in self.groups.items()]
            self.groups = {}
        if self.emit == "changelog":
            return []
        return self._batches(batch, rows, None)

    def _close_all(self, batch: Batch) -> list[Batch]:
        out = self._close(batch, None)
        self._reset()
        return out

    def _batches(self, batch: Batch, rows: list[tuple[Any, ...]], ops: list[Op] | None
                 ) -> list[Batch]:
        if not rows:
            return []
        cols = self.out_columns
        if self._schema is None:
            self._schema = self._infer_schema(rows[0])
        out = []
        for i in range(0, len(rows), OUT_BATCH):
            out.append(Batch(None, batch.stream, batch.position,
                             None if ops is None else ops[i:i + OUT_BATCH],
                             schema=self._schema if ops is not None else None,
                             columns=cols, records=list(rows[i:i + OUT_BATCH])))
        return out

    def _infer_schema(self, record: tuple[Any, ...]) -> Schema:
        key = [*self.group_by, *(self.window_columns[:1] if self.window is not None else ())]
        cols = tuple(Column(c, infer_type(v) if v is not None else ColumnType.STRING,
                            c not in key) for c, v in zip(self.out_columns, record, strict=True))
        return Schema(cols, tuple(key))


def _accumulators(groups: dict[tuple[Any, ...], list[Any]], keys: Sequence[tuple[Any, ...]],
                  new: Any) -> list[list[Any]]:
    """The accumulator of each key (in order), made where missing."""
    out = []
    for k in keys:
        a = groups.get(k)
        if a is None:
            a = groups[k] = new()
        out.append(a)
    return out
