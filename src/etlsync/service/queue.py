"""The run queue: priorities, a global concurrency limit, per-resource limits, one run per job
at a time, cancellation of queued runs.

:meth:`RunQueue.admit` hands out every queued run that may start now, highest priority first
(then oldest): a run waits while the global limit is reached, while a resource it needs is
at its limit, or while another run of its job is active. A run blocked by a busy resource
does not hold up lower-priority runs that need other resources. Continuous runs (CDC) do not
count towards the global limit (they never end), but do take their resources.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from etlsync.core.errors import ConfigError


@dataclass(order=True)
class QueuedRun:
    sort_key: tuple[int, float, int] = field(init=False, repr=False)
    run_id: str = field(compare=False)
    job: str = field(compare=False)
    priority: int = field(default=0, compare=False)
    queued_at: float = field(default=0.0, compare=False)
    resources: tuple[str, ...] = field(default=(), compare=False)
    continuous: bool = field(default=False, compare=False)
    not_before: float = field(default=0.0, compare=False)
    """Not admitted before this time (a retry's backoff, a lease held elsewhere)."""

    def __post_init__(self) -> None:
        self.sort_key = (-self.priority, self.queued_at, next(_seq))


_seq = itertools.count()


def _key(item: QueuedRun) -> tuple[int, float, int]:
    return item.sort_key


class RunQueue:
    def __init__(self, concurrency: int, resources: Mapping[str, int] | None = None) -> None:
        if concurrency < 1:
            raise ConfigError("queue.concurrency: at least 1")
        self.concurrency = concurrency
        self.limits = dict(resources or {})
        self._waiting: list[QueuedRun] = []
        self._active: dict[str, QueuedRun] = {}
        self._active_jobs: set[str] = set()
        self._in_use: dict[str, int] = dict.fromkeys(self.limits, 0)
        self._counted = 0

    def put(self, item: QueuedRun) -> None:
        for r in item.resources:
            if r not in self.limits:
                raise ConfigError(f"job {item.job!r}: unknown resource {r!r}")
        bisect.insort(self._waiting, item, key=_key)

    def cancel(self, run_id: str) -> QueuedRun | None:
        """Remove a queued (not yet admitted) run."""
        for i, item in enumerate(self._waiting):
            if item.run_id == run_id:
                return self._waiting.pop(i)
        return None

    def admit(self, now: float) -> list[QueuedRun]:
        """Every waiting run that may start now; they count as active until :meth:`done`."""
        started: list[QueuedRun] = []
        keep: list[QueuedRun] = []
        for item in self._waiting:
            if self._may_start(item, now):
                self._start(item)
                started.append(item)
            else:
                keep.append(item)
        self._waiting = keep
        return started

    def _may_start(self, item: QueuedRun, now: float) -> bool:
        if item.not_before > now or item.job in self._active_jobs:
            return False
        if not item.continuous and self._counted >= self.concurrency:
            return False
        return all(self._in_use[r] < self.limits[r] for r in item.resources)

    def _start(self, item: QueuedRun) -> None:
        self._active[item.run_id] = item
        self._active_jobs.add(item.job)
        for r in item.resources:
            self._in_use[r] += 1
        if not item.continuous:
            self._counted += 1

    def done(self, run_id: str) -> None:
        """An admitted run ended (or went back to waiting)."""
        item = self._active.pop(run_id, None)
        if item is None:
            return
        self._active_jobs.discard(item.job)
        for r in item.resources:
            self._in_use[r] -= 1
        if not item.continuous:
            self._counted -= 1

    def next_wakeup(self) -> float | None:
        """The earliest ``not_before`` in the future among waiting runs."""
        times = [i.not_before for i in self._waiting if i.not_before]
        return min(times) if times else None

    @property
    def waiting(self) -> Sequence[QueuedRun]:
        return tuple(self._waiting)

    @property
    def active(self) -> Sequence[QueuedRun]:
        return tuple(self._active.values())

    def in_use(self, resource: str) -> int:
        return self._in_use[resource]

    def has_job(self, job: str) -> bool:
        return job in self._active_jobs or any(i.job == job for i in self._waiting)
