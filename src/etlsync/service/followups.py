"""What follows a run (alerts, retries and restarts, dependents) and the checks on running
ones (CDC lag, dead-letter rates): the service's rules, apart from its machinery."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from etlsync.service.alerts import Alert
from etlsync.service.execution import Execution
from etlsync.service.project import JobEntry, seconds
from etlsync.service.state import RunRecord, RunStatus, iso

if TYPE_CHECKING:
    from etlsync.service.service import Service

_DEP_STATUSES = {"succeeded": {RunStatus.SUCCEEDED}, "failed": {RunStatus.FAILED,
                 RunStatus.TIMED_OUT}, "any": set(RunStatus) - {RunStatus.QUEUED,
                                                                 RunStatus.RUNNING}}


async def after_run(service: Service, entry: JobEntry, run: RunRecord) -> None:
    """Alerts, retries and restarts, dependents."""
    status = run.status
    if status is RunStatus.FAILED:
        await service.alerts.emit(Alert("failure", run.job, run.error or "failed", run.id))
    elif status is RunStatus.TIMED_OUT:
        await service.alerts.emit(Alert("timeout", run.job, run.note or "over its time limit",
                                     run.id))
    elif status is RunStatus.SUCCEEDED:
        await service.alerts.emit(Alert("recovery", run.job, "succeeded again", run.id))
    if service._stopping or status is RunStatus.LOST:
        return
    retries = entry.spec.retries
    if status in (RunStatus.FAILED, RunStatus.TIMED_OUT) and (
            entry.continuous or run.attempt <= retries.max_attempts):
        base = seconds(retries.backoff, "backoff") or 0.0
        cap = seconds(retries.max_backoff, "max_backoff") or 0.0
        attempt = run.attempt
        if entry.continuous and (run.ended_at or 0) - (run.started_at or 0) > cap:
            attempt = 1  # it ran a good while: start the backoff over
        delay = min(base * 2 ** (attempt - 1), cap)
        await service.enqueue(entry, "retry", context=run.context, retry_of=run.id,
                           attempt=attempt + 1, not_before=service.clock.now() + delay,
                           dedupe=f"retry:{run.id}", window=window_of(run))
    elif entry.continuous and status is RunStatus.SUCCEEDED:
        await service.enqueue(entry, "continuous", dedupe=f"restart:{run.id}")
    await downstream(service, run)

async def downstream(service: Service, run: RunRecord) -> None:
    for other, t in service._completion.get(run.job, ()):
        if any(run.status in _DEP_STATUSES[s] for s in t.on):
            await service.enqueue(other, "job", context={"upstream": {run.job: run_ref(run)}},
                               dedupe=f"job:{other.name}:{run.id}", window=window_of(run))
    if run.status is not RunStatus.SUCCEEDED:
        return
    for name in service.project.graph.dependents(run.job):
        other = service.project.jobs[name]
        mine = await service.store.runs(job=name, limit=1)
        since = mine[0].queued_at if mine else None
        ups: dict[str, RunRecord] = {}
        for dep in other.spec.depends_on:
            found = await service.store.runs(job=dep, status=["succeeded"], limit=1)
            if not found or (since is not None and (found[0].ended_at or 0) < since):
                break
            ups[dep] = found[0]
        else:
            starts = [r.window_start for r in ups.values() if r.window_start is not None]
            ends = [r.window_end for r in ups.values() if r.window_end is not None]
            window = (min(starts), max(ends)) if starts and ends else None
            key = ",".join(sorted(r.id for r in ups.values()))
            await service.enqueue(other, "depends_on",
                               context={"upstream": {j: run_ref(r) for j, r in ups.items()}},
                               dedupe=f"deps:{name}:{key}", window=window)

async def check_running(service: Service, ex: Execution) -> None:
    now = service.clock.now()
    a = service.alerts
    if a.lag is not None and a.enabled("lag"):
        lag = ex.observer.lag(time.time(), ex.pipeline)
        if lag > a.lag:
            await a.emit(Alert("lag", ex.run.job, f"lag {lag:.0f}s over {a.lag:g}s",
                               ex.run.id, now))
    if a.dead_letter_rate is not None and ex.pipeline is not None:
        bad = sum(int(m.extra.get("bad_rows", 0)) for m in ex.pipeline.metrics.values())
        rows = max(ex.observer.rows_read, 1)
        if bad > ex.dead_letters_seen and bad / rows > a.dead_letter_rate:
            ex.dead_letters_seen = bad
            await a.emit(Alert("dead_letters", ex.run.job,
                               f"{bad} of {rows} rows dead-lettered ({bad / rows:.1%} over "
                               f"{a.dead_letter_rate:.1%})", ex.run.id, now))


def window_of(run: RunRecord) -> tuple[float, float] | None:
    if run.window_start is None or run.window_end is None:
        return None
    return run.window_start, run.window_end


def run_ref(run: RunRecord) -> dict[str, Any]:
    return {"run_id": run.id, "status": run.status.value, "ended_at": iso(run.ended_at),
            "window_start": iso(run.window_start) or "", "window_end": iso(run.window_end) or ""}
