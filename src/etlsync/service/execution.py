"""One run of a job: its lease, its pipeline, its history row, its time limit.

The run takes the job's lease (a fencing token) before anything else, writes its history row
only while it holds that token, and — on a shared state database — writes to its targets only
while its lease is valid by its own monotonic clock (:class:`FencedSink`): an instance whose
heartbeat stopped (paused, cut off) stops writing before another instance can take the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability, capabilities_of
from etlsync.core.checkpoint import CheckpointStore
from etlsync.core.errors import EtlsyncError, StageError
from etlsync.core.observe import Event, EventKind
from etlsync.core.pipeline import Pipeline
from etlsync.core.revert import reversible
from etlsync.core.schema import Schema
from etlsync.core.stages import Sink, StageContext
from etlsync.jobs.build import BuiltJob
from etlsync.jobs.runner import JobResult, run_pipeline
from etlsync.resilience.classify import PermanentError
from etlsync.service.project import JobEntry
from etlsync.service.state import LogLine, RunRecord, RunStatus, iso

if TYPE_CHECKING:
    from etlsync.service.service import Service

MAX_LOG_LINES = 500


class LeaseLost(PermanentError):
    """This instance no longer holds the job's lease: it must not write."""


class Lease:
    """This instance's view of one job lease: its token, and until when it is surely valid
    (the last renewal's start plus the time to live, less a safety margin)."""

    def __init__(self, job: str, token: int, ttl: float, margin: float) -> None:
        self.job, self.token, self.ttl, self.margin = job, token, ttl, margin
        self.valid_until = time.monotonic() + ttl - margin
        self.lost = False

    def renewed(self, started: float) -> None:
        self.valid_until = started + self.ttl - self.margin

    def check(self) -> None:
        if self.lost or time.monotonic() > self.valid_until:
            self.lost = True
            raise LeaseLost(f"the lease of job {self.job!r} (token {self.token}) expired or "
                            "passed to another instance: this run stops writing")


class FencedSink(Sink):
    """A sink that writes only while the run's lease is valid (every other call and
    attribute is the wrapped sink's)."""

    def __init__(self, sink: Sink, lease: Lease) -> None:
        self.sink, self.lease = sink, lease
        self.name = sink.name

    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]
        return capabilities_of(self.sink)

    def checkpoint_store(self) -> CheckpointStore | None:
        return self.sink.checkpoint_store()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("sink", "lease"):
            raise AttributeError(name)
        return getattr(self.sink, name)

    async def open(self, context: StageContext) -> None:
        self.lease.check()
        await self.sink.open(context)

    async def describe(self) -> Schema | None:
        return await self.sink.describe()

    async def write(self, batch: Batch) -> None:
        self.lease.check()
        await self.sink.write(batch)

    async def close(self) -> None:
        await self.sink.close()


class RunObserver:
    """Turns pipeline events into the run's log lines, live progress and lag figures."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution
        self.rows_read = 0
        self.rows_written = 0
        self.last_commit = time.time()
        self.pending_since: float | None = None
        """When data was read that no commit covers yet (the commit lag's start)."""
        self._last_progress = 0.0

    def __call__(self, event: Event) -> None:
        ex = self.execution
        kind = event.kind
        if kind is EventKind.BATCH_READ:
            self.rows_read += event.rows
            if event.rows and self.pending_since is None:
                self.pending_since = event.at
        elif kind is EventKind.BATCH_WRITTEN:
            self.rows_written += event.rows
        elif kind is EventKind.COMMIT:
            self.last_commit, self.pending_since = event.at, None
        elif kind is EventKind.STARTED:
            ex.started_event_at = event.at
            ex.log("info", f"pipeline started from {_short(event.position)}")
        elif kind is EventKind.ERROR:
            ex.log("error", f"{event.stage}: {type(event.error).__name__}: {event.error}")
        elif kind is EventKind.FINISHED:
            ex.log("info", f"pipeline {event.state}")
        if kind in (EventKind.BATCH_WRITTEN, EventKind.COMMIT) and event.at - self._last_progress >= 1:
            self._last_progress = event.at
            ex.service.publish("run_progress", ex.run, rows_read=self.rows_read,
                               rows_written=self.rows_written)

    def lag(self, now: float, pipeline: Pipeline | None) -> float:
        """Seconds the oldest uncommitted data has waited, or what the source reports as
        ``lag_seconds`` in its ``extra_metrics()`` (replication lag)."""
        if pipeline is not None:
            for key, m in pipeline.metrics.items():
                if key.startswith("source:") and "lag_seconds" in m.extra:
                    return float(m.extra["lag_seconds"])
        return 0.0 if self.pending_since is None else max(0.0, now - self.pending_since)


def _short(value: Any, width: int = 120) -> str:
    text = "the beginning" if value is None else repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


class Execution:
    """Runs one queued run to its end and records it."""

    def __init__(self, service: Service, run: RunRecord, entry: JobEntry) -> None:
        self.service, self.run, self.entry = service, run, entry
        self.pipeline: Pipeline | None = None
        self.lease: Lease | None = None
        self.stop_reason: RunStatus | None = None
        self.stop_note: str | None = None
        self.observer = RunObserver(self)
        self.lines: list[LogLine] = []
        self._flushed = 0
        self.started_event_at: float | None = None
        self.task: asyncio.Task[Any] | None = None
        self.dead_letters_seen = 0

    def log(self, level: str, message: str) -> None:
        if len(self.lines) < MAX_LOG_LINES:
            self.lines.append(LogLine(self.run.id, self.service.clock.now(), level,
                                      self.service.redact(message)))

    async def flush_logs(self) -> None:
        new, self._flushed = self.lines[self._flushed:], len(self.lines)
        if new:
            await self.service.store.add_logs(new)

    def stop(self, reason: RunStatus, note: str) -> None:
        """Stop the run gracefully (drained, committed); a second stop cancels it."""
        if self.stop_reason is not None and self.task is not None:
            self.task.cancel()
            return
        self.stop_reason, self.stop_note = reason, note
        self.log("warning", note)
        if self.pipeline is not None:
            self.pipeline.stop()

    async def acquire(self) -> bool:
        """Take the job's lease and record the run as started; ``False`` (nothing changed)
        when another instance (or a rollback) holds the lease."""
        svc, run = self.service, self.run
        started = svc.clock.now()
        token = await svc.store.start_run(run, svc.instance_id, svc.lease_ttl, started)
        if token is None:
            return False
        self.lease = Lease(run.job, token, svc.lease_ttl, svc.lease_margin)
        run.fence, run.instance = token, svc.instance_id
        run.status, run.started_at = RunStatus.RUNNING, started
        return True

    async def execute(self) -> RunRecord:
        """Record the run as started, build its job, run it, record the end. (The start is
        recorded first: building the stages is part of the run, and a run that cannot be
        built is a failed run.)"""
        svc, run = self.service, self.run
        assert self.lease is not None, "acquire() first"
        svc.publish("run_started", run)
        self.log("info", f"started on {svc.instance_id} (lease token {self.lease.token})")
        await asyncio.sleep(0)  # runs that started together all say so before any builds
        try:
            built = self.entry.build(svc.run_context(run), svc.env)
            pipeline = self._pipeline(built)
            store, _ = pipeline.resolve_checkpoint_store()
            before = await store.peek(run.job)
            run.checkpoint_before = None if before is None else before.encode().decode()
        except Exception as exc:  # noqa: BLE001 - a run that cannot start is a failed run
            return await self._finish(RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        # what a rollback of this run needs, before it writes anything
        await svc.store.update_run(run, "checkpoint_before", "journal")
        if self.stop_reason is not None:  # cancelled while starting
            pipeline.stop()
        return await self._run_pipeline(built, pipeline, store)

    def _pipeline(self, built: BuiltJob) -> Pipeline:
        assert self.lease is not None
        if self.entry.journal:
            for sink in built.sinks:
                journaled = reversible(sink)
                if journaled is not None:
                    journaled.journal(self.run.id)
            self.run.journal = True
        if self.service.store.shared:
            lease = self.lease
            built = dataclasses.replace(built, sinks=[FencedSink(s, lease) for s in built.sinks])
        pipeline = built.pipeline()
        pipeline.subscribe(self.observer)
        self.pipeline = pipeline
        self._built = built
        return pipeline

    async def _run_pipeline(self, built: BuiltJob, pipeline: Pipeline,
                            store: CheckpointStore) -> RunRecord:
        timer = None
        if self.entry.max_run_time is not None:
            timer = asyncio.create_task(self._time_limit(self.entry.max_run_time))
        result: JobResult | None = None
        error: str | None = None
        try:
            result = await run_pipeline(built, pipeline, handle_signals=False)
        except StageError as exc:
            error = f"stage {exc.stage!r} failed: {type(exc.cause).__name__}: {exc.cause}"
            if isinstance(exc.cause, LeaseLost):
                self.stop_reason = RunStatus.LOST
        except asyncio.CancelledError:
            error = "cancelled without draining (a second stop request)"
            if self.stop_reason is None:
                self.stop_reason = RunStatus.CANCELLED
        except (EtlsyncError, OSError, RuntimeError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if timer is not None:
                timer.cancel()
        if result is not None:
            s = self.run
            s.rows_read, s.rows_written = result.summary.rows_read, result.summary.rows_written
            s.rows_rejected, s.rows_filtered = result.rows_rejected, result.rows_filtered
        else:
            self.run.rows_read = self.observer.rows_read
            self.run.rows_written = self.observer.rows_written
        with contextlib.suppress(Exception):
            after = await store.peek(self.run.job)
            self.run.checkpoint_after = None if after is None else after.encode().decode()
        status = self._status(result, error)
        if status is RunStatus.LOST:
            error = error or "the lease passed to another instance"
        return await self._finish(status, error=error, note=self.stop_note)

    async def _time_limit(self, limit: float) -> None:
        await self.service.clock.sleep_until((self.run.started_at or 0.0) + limit)
        self.stop(RunStatus.TIMED_OUT, f"over its time limit ({limit:g}s): stopping")

    def _status(self, result: JobResult | None, error: str | None) -> RunStatus:
        if self.stop_reason is RunStatus.LOST:
            return RunStatus.LOST
        if error is not None and self.stop_reason is None:
            return RunStatus.FAILED
        if result is not None and result.summary.status == "failed":
            return RunStatus.FAILED
        if self.stop_reason is not None:
            return self.stop_reason
        return RunStatus.SUCCEEDED

    async def _finish(self, status: RunStatus, *, error: str | None = None,
                      note: str | None = None) -> RunRecord:
        svc, run = self.service, self.run
        run.status, run.ended_at = status, svc.clock.now()
        run.error = None if error is None else svc.redact(error)
        if note:
            run.note = f"{run.note}; {note}" if run.note else note
        if run.started_at is None:
            run.started_at = run.ended_at
        self.log("error" if status is RunStatus.FAILED else "info",
                 f"{status.value}: {run.rows_read} rows read, {run.rows_written} written"
                 + (f"; {run.error}" if run.error else ""))
        recorded = await svc.store.update_run(
            run, "status", "started_at", "ended_at", "rows_read", "rows_written",
            "rows_rejected", "rows_filtered", "error", "checkpoint_before", "checkpoint_after",
            "journal", "note", "fence", "instance")
        if not recorded:
            self.log("error", "result not recorded: the job's lease passed to another instance")
            run.status = RunStatus.LOST
        await self.flush_logs()
        if self.lease is not None and not self.lease.lost:
            await svc.store.release_lease(run.job, svc.instance_id, self.lease.token)
        return run


class LogCapture:
    """A structlog processor: warnings and errors logged by a running job's stages (events
    bound to ``pipeline=<job>``) become that run's log lines. ``Service.capture_logs()``
    installs it (``etlsync serve`` does); an application embedding the service may too."""

    levels = frozenset({"warning", "warn", "error", "critical", "exception"})

    def __init__(self, service: Service) -> None:
        self.service = service

    def __call__(self, logger: Any, method: str, event: Any) -> Any:
        job = event.get("pipeline") if isinstance(event, dict) else None
        if job and method in self.levels:
            for ex in self.service.executions.values():
                if ex.run.job == job:
                    extra = " ".join(f"{k}={v}" for k, v in event.items()
                                     if k not in ("event", "pipeline", "timestamp", "level"))
                    ex.log("error" if method in ("error", "critical", "exception") else
                           "warning", f"{event.get('event', '')} {extra}".strip())
        return event


def run_context(run: RunRecord) -> dict[str, Any]:
    """What ``${run.x}``, ``${trigger.x}`` and ``${upstream.job.x}`` read for ``run``."""
    ctx = dict(run.context)
    return {"run": {"id": run.id, "job": run.job, "trigger": run.trigger,
                    "attempt": run.attempt, "scheduled_for": iso(run.scheduled_for) or "",
                    "window_start": iso(run.window_start) or "",
                    "window_end": iso(run.window_end) or "",
                    "window_start_epoch": run.window_start or "",
                    "window_end_epoch": run.window_end or ""},
            "trigger": ctx.get("trigger", {k: v for k, v in ctx.items() if k != "upstream"}),
            "upstream": ctx.get("upstream", {})}
