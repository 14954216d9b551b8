"""Deduplication by key, within an event-time window or over a bounded set of keys."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from etlsync.core.batch import Batch, Op
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.schema import Schema
from etlsync.core.stages import Operator, OperatorOutput
from etlsync.operators._common import (
    EventTime,
    cap_error,
    check_columns,
    check_reject,
    duration_us,
    keep_rows,
)
from etlsync.operators._state import pack_columns, unpack_columns


class Dedupe(Operator):
    """Keep the first row of each ``key``; later rows with a key already seen are dropped.

    :param within: with ``time_column``: a key is remembered for this long in event time
        (``"10m"``): a row repeats a key only if it comes less than ``within`` after the
        first one; keys expire once the highest event time seen passes that.
    :param max_keys: the most keys remembered. When it is reached, ``on_full="evict"``
        forgets the oldest keys first (dedupe over the last ``max_keys`` distinct keys);
        ``"fail"`` stops with a :class:`~etlsync.operators.StateLimitExceeded` error.

    Updates, deletes and truncates of change streams pass untouched. The remembered keys go
    into the pipeline's checkpoint (``STATEFUL``), so a restart drops exactly the rows an
    uninterrupted run would have dropped.
    """

    capabilities = frozenset({Capability.STATEFUL})

    def __init__(self, key: Sequence[str] | str, *, within: Any = None,
                 time_column: str | None = None, max_keys: int = 1_000_000,
                 on_full: str = "evict", name: str = "dedupe") -> None:
        self.name = name
        where = f"dedupe {name!r}"
        self.key = check_columns(where, key, "key")
        if not self.key:
            raise ConfigError(f"{where}: key names at least one column")
        check_reject(where, on_full, ("evict", "fail"))
        if (within is None) != (time_column is None):
            raise ConfigError(f"{where}: within and time_column go together (a window in "
                              "event time)")
        self.within = None if within is None else duration_us(within, f"{where}: within")
        self.time = EventTime(time_column) if time_column else None
        if max_keys < 1:
            raise ConfigError(f"{where}: max_keys must be at least 1")
        self.max_keys = max_keys
        self.on_full = on_full
        self.seen: OrderedDict[Any, int | None] = OrderedDict()
        """key -> event time (microseconds) of its first row (``None`` without a window)."""
        self.max_time: int | None = None
        self.duplicates = 0
        self.evicted = 0

    def snapshot_state(self) -> Any:
        """The remembered keys, oldest first, packed column by column (with their times)."""
        columns = [list(c) for c in zip(*self.seen, strict=True)] if self.seen else \
            [[] for _ in self.key]
        if self.within is not None:
            columns.append(list(self.seen.values()))
        return {"v": 2, "keys": pack_columns(columns), "max_time": self.max_time,
                "kind": None if self.time is None else self.time.state()}

    def restore_state(self, state: Any) -> None:
        self.seen, self.max_time = OrderedDict(), None
        if not state:
            return
        columns = unpack_columns(state["keys"])
        n = len(self.key)
        keys = list(zip(*columns[:n], strict=True)) if columns and columns[0] else []
        times = columns[n] if self.within is not None and len(columns) > n else \
            [None] * len(keys)
        self.seen = OrderedDict(zip(keys, times, strict=True))
        self.max_time = state.get("max_time")
        if self.time is not None:
            self.time.restore(state.get("kind"))

    def extra_metrics(self) -> dict[str, Any]:
        return {"duplicates": self.duplicates, "state_keys": len(self.seen),
                "evicted": self.evicted}

    def transform_schema(self, schema: Schema) -> Schema:
        return schema

    async def process(self, batch: Batch) -> OperatorOutput:
        if not len(batch):
            return batch
        keys = batch.view(self.key)
        seen, ops = self.seen, batch.ops
        times: list[int] | None = None
        if self.time is not None:
            micros, stream = self.time.micros, batch.stream
            times = [micros(v, stream, i) for i, (v,) in
                     enumerate(batch.view([self.time.column]))]
        keep: list[int] = []
        within, cap, fail = self.within, self.max_keys, self.on_full == "fail"
        for i, k in enumerate(keys):
            if ops is not None and ops[i] is not Op.INSERT:
                keep.append(i)
                continue
            if times is None:
                if k in seen:
                    continue
                seen[k] = None
            else:
                assert within is not None
                t = times[i]
                if self.max_time is None or t > self.max_time:
                    self.max_time = t
                first = seen.get(k)
                if first is not None and t - first < within:
                    continue
                seen[k] = t
                seen.move_to_end(k)
                horizon = self.max_time - within
                while seen:  # forget keys whose window the newest event time has passed
                    oldest = next(iter(seen.values()))
                    if oldest is None or oldest > horizon:
                        break
                    seen.popitem(last=False)
            keep.append(i)
            if len(seen) > cap:  # per row, so where batches are cut changes nothing
                if fail:
                    raise cap_error(f"dedupe {self.name!r}", len(seen), cap, "keys")
                seen.popitem(last=False)
                self.evicted += 1
        self.duplicates += len(keys) - len(keep)
        return keep_rows(batch, keep)
