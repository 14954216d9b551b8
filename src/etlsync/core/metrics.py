"""Per-stage counters, readable while a pipeline runs, and the run summary."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class StageMetrics:
    """Counters of one stage. ``busy_seconds`` is time spent inside the stage's own code."""

    stage: str
    rows_in: int = 0
    rows_out: int = 0
    batches_in: int = 0
    batches_out: int = 0
    errors: int = 0
    busy_seconds: float = 0.0
    max_batch_seconds: float = 0.0
    channel_batches: int = 0
    channel_rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """Counters the stage itself reports through an ``extra_metrics()`` method (retries,
    dead letters, breaker state, ...)."""

    def record(self, rows_in: int, rows_out: int, batches_out: int, seconds: float) -> None:
        self.rows_in += rows_in
        self.batches_in += 1
        self.rows_out += rows_out
        self.batches_out += batches_out
        self.busy_seconds += seconds
        if seconds > self.max_batch_seconds:
            self.max_batch_seconds = seconds

    @property
    def mean_batch_seconds(self) -> float:
        return self.busy_seconds / self.batches_in if self.batches_in else 0.0


@dataclass(slots=True)
class RunSummary:
    """What :meth:`Pipeline.run` returns."""

    pipeline: str
    status: str
    """``completed`` (source exhausted), ``stopped`` (stop request) or ``failed``."""
    started_at: float
    duration_seconds: float
    stages: dict[str, StageMetrics] = field(default_factory=dict)
    committed_position: Any = None
    commits: int = 0
    error: str | None = None

    @property
    def rows_read(self) -> int:
        return sum(m.rows_out for k, m in self.stages.items() if k.startswith("source:"))

    @property
    def rows_written(self) -> int:
        """Rows written by the first sink (every sink gets the same rows)."""
        for k, m in self.stages.items():
            if k.startswith("sink:"):
                return m.rows_in
        return 0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.duration_seconds if self.duration_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(rows_read=self.rows_read, rows_written=self.rows_written,
                 rows_per_second=self.rows_per_second)
        return d

    def __str__(self) -> str:
        return (
            f"{self.pipeline}: {self.status}: {self.rows_read} rows read, {self.rows_written} written"
            f" in {self.duration_seconds:.2f}s ({self.rows_per_second:,.0f} rows/s)"
        )


def now() -> float:
    return time.perf_counter()
