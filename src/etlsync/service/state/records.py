"""The records the state database keeps: runs and their log lines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    """Stopped gracefully by a shutdown (SIGTERM): drained and committed."""
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    """Stopped after its ``max_run_time``."""
    LOST = "lost"
    """Its instance died (kill -9, a crash, a lost machine) while it ran: what was committed
    stays committed; the job runs again from its checkpoint."""

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass
class RunRecord:
    """One run of a job, as the history keeps it."""

    id: str
    job: str
    trigger: str
    """``schedule``, ``continuous``, ``http``, ``api``, ``files``, ``message``, ``job``
    (another job completed), ``depends_on``, ``retry``, ``recovery``, ``resume``."""
    status: RunStatus = RunStatus.QUEUED
    priority: int = 0
    queued_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    scheduled_for: float | None = None
    window_start: float | None = None
    window_end: float | None = None
    dedupe: str | None = None
    instance: str | None = None
    fence: int | None = None
    """The fencing token of the job lease this run held."""
    attempt: int = 1
    retry_of: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    rows_filtered: int = 0
    error: str | None = None
    checkpoint_before: str | None = None
    """The encoded checkpoint the run started from (``None``: from the beginning)."""
    checkpoint_after: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    """What the run was given: trigger values, upstream runs (``${trigger.x}`` etc.)."""
    journal: bool = False
    """The run recorded what it changed: it can be rolled back."""
    rolled_back_at: float | None = None
    note: str | None = None
    cancel_requested: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        for k in ("queued_at", "started_at", "ended_at", "scheduled_for", "window_start",
                  "window_end", "rolled_back_at"):
            d[k] = iso(d[k])
        d["seconds"] = None if self.started_at is None or self.ended_at is None else \
            round(self.ended_at - self.started_at, 3)
        return d


COLUMNS = tuple(f.name for f in fields(RunRecord))
_JSON = {"context"}
_BOOL = {"journal", "cancel_requested"}


def column_value(run: RunRecord, name: str) -> Any:
    """``run``'s field ``name`` as the database stores it."""
    v = getattr(run, name)
    if name in _JSON:
        return msgspec.json.encode(v, enc_hook=str).decode()
    if name in _BOOL:
        return 1 if v else 0
    if name == "status":
        return v.value
    return v


def to_row(run: RunRecord) -> tuple[Any, ...]:
    return tuple(column_value(run, name) for name in COLUMNS)


def from_row(row: tuple[Any, ...]) -> RunRecord:
    kw: dict[str, Any] = {}
    for name, v in zip(COLUMNS, row, strict=True):
        if name in _JSON:
            v = msgspec.json.decode(v) if v else {}
        elif name in _BOOL:
            v = bool(v)
        elif name == "status":
            v = RunStatus(v)
        kw[name] = v
    return RunRecord(**kw)


@dataclass(frozen=True)
class LogLine:
    run_id: str
    at: float
    level: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso(self.at), "level": self.level, "message": self.message}


def iso(t: float | None) -> str | None:
    """``t`` (epoch seconds) as ISO 8601 in UTC."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat()
