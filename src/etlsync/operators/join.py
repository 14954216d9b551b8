"""Joins: a lookup (enrichment) join against a table or a snapshot, and a stream-stream join
within a time window."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError, DataError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Operator, OperatorOutput, StageContext
from etlsync.operators._common import (
    EventTime,
    Rejects,
    cap_error,
    check_reject,
    duration_us,
)
from etlsync.operators.lookup import Lookup, TtlCache, resolve


def _on(on: Any, where: str) -> dict[str, str]:
    if isinstance(on, str):
        return {on: on}
    if isinstance(on, dict) and on:
        return {str(k): str(v) for k, v in on.items()}
    if isinstance(on, list | tuple) and on:
        return {str(c): str(c) for c in on}
    raise ConfigError(f"{where}: on maps stream columns to lookup columns, e.g. "
                      "{customer_id: id}")


class LookupJoin(Operator):
    """Enrich each row with the row of ``lookup`` whose key equals the row's ``on`` columns
    (``{stream column: lookup key column}``).

    Each batch's distinct keys are looked up at once (cached ones skipped); the cache keeps
    ``cache_size`` keys (found or missing) for ``ttl`` seconds (``None``: until evicted).
    ``columns`` picks the lookup's columns to add (default: all but its key), named with
    ``prefix``. A row without a match (``miss``): ``null`` keeps it with ``None`` s (a left
    join), ``drop`` removes it (an inner join), ``dead_letter`` / ``side_output`` / ``fail``
    reject it with the reason. A ``NULL`` key never matches.
    """

    def __init__(self, lookup: Lookup, on: dict[str, str] | Sequence[str] | str, *,
                 columns: Sequence[str] | None = None, prefix: str = "", miss: str = "null",
                 cache_size: int = 100_000, ttl: float | None = 300.0,
                 dead_letter: Any = None, name: str = "join") -> None:
        self.name = name
        where = f"join {name!r}"
        self.lookup = lookup
        self.on = _on(on, where)
        if tuple(self.on.values()) != tuple(lookup.key):
            raise ConfigError(f"{where}: on {self.on} must name the lookup's key columns "
                              f"{list(lookup.key)}, in that order")
        check_reject(where, miss, ("null", "drop", "dead_letter", "side_output", "fail"))
        self.miss = miss
        self.columns = None if columns is None else list(columns)
        self.prefix = prefix
        self.cache = TtlCache(cache_size, ttl) if cache_size > 0 else None
        self.rejects = Rejects(f"op:{name}", miss if miss not in ("null", "drop") else "drop",
                               dead_letter, "unmatched")
        self.unmatched = 0

    async def open(self, context: StageContext) -> None:
        await self.rejects.open(context)
        await self.lookup.open()

    async def close(self) -> None:
        try:
            await self.lookup.close()
        finally:
            await self.rejects.close()

    def extra_metrics(self) -> dict[str, Any]:
        c = self.cache
        return {"unmatched": self.unmatched, "cache_hits": 0 if c is None else c.hits,
                "cache_misses": 0 if c is None else c.misses,
                "cache_entries": 0 if c is None else len(c)}

    def _added(self, sample: Row | None) -> list[str]:
        if self.columns is not None:
            return self.columns
        if self.lookup.columns is not None:
            return [c for c in self.lookup.columns if c not in self.lookup.key]
        return [] if sample is None else [c for c in sample if c not in self.lookup.key]

    def transform_schema(self, schema: Schema) -> Schema | None:
        added = self._added(None)
        if self.columns is None and self.lookup.columns is None:
            return None
        return Schema((*schema.columns, *(Column(self.prefix + c, ColumnType.UNKNOWN)
                                          for c in added)), schema.primary_key)

    async def process(self, batch: Batch) -> OperatorOutput:
        if not len(batch):
            return batch
        keys = batch.view(list(self.on))
        found = await resolve(self.lookup, self.cache, keys)
        sample = next((r for r in found.values() if r is not None), None)
        added = self._added(sample)
        names = [self.prefix + c for c in added]
        cols = batch.column_names()
        clash = set(names) & set(cols)
        if clash:
            raise DataError(f"join {self.name!r}: lookup columns {sorted(clash)} are already "
                            f"columns of stream {batch.stream!r}; set a prefix")
        records = batch.view(cols)
        none = (None,) * len(added)
        if not added:
            extra: dict[Any, tuple[Any, ...]] = {k: () for k, r in found.items() if r is not None}
        else:
            pick = itemgetter(*added) if all(c in (sample or {}) for c in added) else \
                (lambda r: tuple(r.get(c) for c in added))
            if len(added) == 1:
                extra = {k: (pick(r),) for k, r in found.items() if r is not None}
            else:
                extra = {k: pick(r) for k, r in found.items() if r is not None}
        out: list[Sequence[Any]]
        if self.miss == "null":  # a left join: every row stays
            out = [rec + extra.get(k, none) for k, rec in zip(keys, records, strict=True)]
            keep: Sequence[int] = range(len(out))
            if len(extra) < len(found) or len(found) < len(set(keys)):
                self.unmatched += sum(1 for k in keys if k not in extra)
            missed: list[int] = []
        else:
            kept: list[int] = []
            out, missed = [], []
            for i, (k, rec) in enumerate(zip(keys, records, strict=True)):
                if k not in extra:
                    missed.append(i)
                    continue
                out.append(rec + extra[k])
                kept.append(i)
            keep = kept
            self.unmatched += len(missed)
        result: list[Batch] = []
        if missed and self.miss not in ("null", "drop"):
            rows = batch.rows
            side = await self.rejects.reject(
                batch, [rows[i] for i in missed],
                [f"no {self.lookup.key} = {keys[i]} in the lookup" for i in missed])
            if side is not None:
                result.append(side)
        ops = None if batch.ops is None or len(keep) == len(batch) else [batch.ops[i] for i in keep]
        before = None if batch.before is None or len(keep) == len(batch) else \
            [batch.before[i] for i in keep]
        result.insert(0, batch.with_records(cols + names, out, ops, before))
        return result


class IntervalJoin(Operator):
    """Join rows of stream ``left`` with rows of stream ``right`` whose keys match (``on``:
    ``{left column: right column}``) and whose event times are at most ``within`` apart.

    Both sides are buffered by key; a buffered row is forgotten once the other side's
    watermark (its highest event time minus ``allowed_lateness``) passes its time plus
    ``within`` (per row, so results do not depend on how batches are cut). ``how="left"``
    also emits each left row that found no match, with ``None`` s, when it is forgotten.
    Joined rows go out on stream ``stream`` (default: the left stream's name) as the left row
    plus the right row's columns (``right_prefix`` + name; the right join columns are left
    out). Other streams pass through. The buffers are the checkpointed state (``STATEFUL``),
    capped at ``max_state`` rows.
    """

    capabilities = frozenset({Capability.STATEFUL})

    def __init__(self, left: str, right: str, on: dict[str, str] | Sequence[str] | str, *,
                 time_column: str | None = None, right_time_column: str | None = None,
                 within: Any = 60, allowed_lateness: Any = 0, how: str = "inner",
                 right_prefix: str = "", stream: str | None = None,
                 max_state: int = 1_000_000, name: str = "interval_join") -> None:
        self.name = name
        where = f"interval join {name!r}"
        if not time_column:
            raise ConfigError(f"{where}: time_column names the event time")
        check_reject(where, how, ("inner", "left"))
        self.left, self.right, self.how = left, right, how
        self.on = _on(on, where)
        self.times = (EventTime(time_column), EventTime(right_time_column or time_column))
        self.within = duration_us(within, f"{where}: within")
        self.lateness = duration_us(allowed_lateness, f"{where}: allowed_lateness")
        self.right_prefix = right_prefix
        self.stream = stream
        self.max_state = max_state
        self.restore_state(None)

    def snapshot_state(self) -> Any:
        return {"v": 1, "max": list(self.max_time), "seq": self.seq,
                "kinds": [t.state() for t in self.times],
                "rows": [[[e[0], e[1], e[2], e[3]] for e in entries.values()]
                         for entries in self.entries]}

    def restore_state(self, state: Any) -> None:
        self.max_time: list[int | None] = [None, None]
        self.seq = 0
        self.entries: tuple[dict[int, list[Any]], dict[int, list[Any]]] = ({}, {})
        """Per side: seq -> [time, seq, row, matched]."""
        self.by_key: tuple[dict[Any, list[int]], dict[Any, list[int]]] = ({}, {})
        self.heaps: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])
        if not state:
            return
        self.max_time = list(state["max"])
        self.seq = state["seq"]
        for t, kind in zip(self.times, state["kinds"], strict=True):
            t.restore(kind)
        for side, rows in enumerate(state["rows"]):
            for t, seq, row, matched in rows:
                self._add(side, t, seq, row, matched)

    def _key(self, side: int, row: Row) -> tuple[Any, ...]:
        cols = self.on.keys() if side == 0 else self.on.values()
        return tuple(row.get(c) for c in cols)

    def _add(self, side: int, t: int, seq: int, row: Row, matched: bool) -> None:
        self.entries[side][seq] = [t, seq, row, matched]
        self.by_key[side].setdefault(self._key(side, row), []).append(seq)
        heapq.heappush(self.heaps[side], (t, seq))

    def extra_metrics(self) -> dict[str, Any]:
        return {"buffered_left": len(self.entries[0]), "buffered_right": len(self.entries[1])}

    def _joined(self, left: Row, right: Row | None, right_cols: Sequence[str]) -> Row:
        out = dict(left)
        p = self.right_prefix
        skip = set(self.on.values())
        if right is None:
            out.update((p + c, None) for c in right_cols if c not in skip)
            return out
        for c, v in right.items():
            if c in skip:
                continue
            name = p + c
            if name in out:
                raise DataError(f"interval join {self.name!r}: column {name!r} is on both "
                                "sides; set right_prefix")
            out[name] = v
        return out

    async def process(self, batch: Batch) -> OperatorOutput:
        if batch.stream not in (self.left, self.right) or not len(batch):
            return batch if batch.stream not in (self.left, self.right) else None
        side = 0 if batch.stream == self.left else 1
        other = 1 - side
        tcol = self.times[side]
        stream = batch.stream
        out: list[Row] = []
        for i, row in enumerate(batch.rows):
            t = tcol.micros(row.get(tcol.column), stream, i)
            if self.max_time[side] is None or t > self.max_time[side]:  # type: ignore[operator]
                self.max_time[side] = t
            key = self._key(side, row)
            matched = False
            if all(v is not None for v in key):
                for seq in self.by_key[other].get(key, ()):
                    entry = self.entries[other][seq]
                    if abs(entry[0] - t) <= self.within:
                        matched = entry[3] = True
                        out.append(self._joined(row, entry[2], ()) if side == 0
                                   else self._joined(entry[2], row, ()))
            self.seq += 1
            self._add(side, t, self.seq, row, matched)
            out.extend(self._expire(other, self.max_time[side]))
        size = len(self.entries[0]) + len(self.entries[1])
        if size > self.max_state:
            raise cap_error(f"interval join {self.name!r}", size, self.max_state, "rows")
        if not out:
            return None
        return Batch(out, self.stream or self.left, batch.position)

    def _expire(self, side: int, other_max: int | None) -> list[Row]:
        """Forget rows of ``side`` that the other side's watermark passed."""
        if other_max is None:
            return []
        horizon = other_max - self.lateness - self.within
        heap, entries, out = self.heaps[side], self.entries[side], []
        while heap and heap[0][0] < horizon:
            _, seq = heapq.heappop(heap)
            entry = entries.pop(seq)
            key = self._key(side, entry[2])
            seqs = self.by_key[side][key]
            seqs.remove(seq)
            if not seqs:
                del self.by_key[side][key]
            if side == 0 and self.how == "left" and not entry[3]:
                out.append(self._joined(entry[2], None, list(self.on.values())))
        return out

    async def flush(self) -> OperatorOutput:
        if self.how != "left":
            return None
        rows = [self._joined(e[2], None, ()) for e in self.entries[0].values() if not e[3]]
        self.restore_state(None)
        return Batch(rows, self.stream or self.left) if rows else None
