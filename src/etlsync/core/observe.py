"""Pipeline events and their subscribers (docs/concepts/observers.md).

A running pipeline reports what happens as :class:`Event` s to every subscribed observer: a
plain callable taking one event. Observers run inline in the pipeline's task, once per batch
per stage, so they must be cheap and must not block: queue work elsewhere. An observer that
raises is logged and unsubscribed; it never fails the pipeline. The per-stage counters
(:class:`MetricsObserver`) and the progress bar are observers; so are run history, metrics
exporters and dashboards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from etlsync.core.metrics import StageMetrics


class EventKind(StrEnum):
    STARTED = "started"
    """The run began; ``position`` is where it resumes from."""
    STAGE = "stage"
    """A stage changed state; ``state`` is ``open``, ``running``, ``finished`` or ``failed``."""
    BATCH_READ = "batch_read"
    """The source yielded a batch of ``rows`` (``seconds``: time waiting for it)."""
    BATCH_PROCESSED = "batch_processed"
    """An operator turned ``rows`` rows into ``rows_out`` rows in ``batches`` batches."""
    BATCH_WRITTEN = "batch_written"
    """A sink made a batch of ``rows`` durable in ``seconds``."""
    COMMIT = "commit"
    """A checkpoint was committed at ``position`` (``seconds``: the commit's duration)."""
    ERROR = "error"
    """A stage failed with ``error``."""
    FINISHED = "finished"
    """The run ended; ``state`` is its status and ``summary`` the :class:`RunSummary`."""


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened in a pipeline."""

    kind: EventKind
    pipeline: str
    stage: str = ""
    rows: int = 0
    rows_out: int = 0
    batches: int = 0
    seconds: float = 0.0
    position: Any = None
    state: str = ""
    error: BaseException | None = None
    summary: Any = None
    at: float = field(default_factory=time.time)
    """Wall-clock time of the event (``time.time()``)."""


Observer = Callable[[Event], None]


class MetricsObserver:
    """Per-stage counters built from events; :attr:`Pipeline.metrics` reads them."""

    def __init__(self, stages: list[str]) -> None:
        self.stages: dict[str, StageMetrics] = {n: StageMetrics(n) for n in stages}

    def __call__(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.BATCH_READ or kind is EventKind.BATCH_WRITTEN:
            m = self.stages.get(event.stage)
            if m is not None:
                m.record(event.rows, event.rows, 1, event.seconds)
        elif kind is EventKind.BATCH_PROCESSED:
            m = self.stages.get(event.stage)
            if m is not None:
                m.record(event.rows, event.rows_out, event.batches, event.seconds)
        elif kind is EventKind.ERROR:
            m = self.stages.get(event.stage)
            if m is not None:
                m.errors += 1
