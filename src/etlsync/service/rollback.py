"""``etlsync rollback RUN_ID``: revert what one run wrote, and rewind its checkpoint.

A run can be rolled back when it recorded what it changed (its job's sinks are
``REVERSIBLE`` and journaling was on), it is its job's latest run that wrote anything (roll
back later ones first), and nothing else is running the job (the rollback takes the job's
lease). Every sink reverts in its own transaction; the sink that owns the pipeline's checkpoint
stores the checkpoint from before the run in the same transaction; another store is rewound
after the sinks. A target that cannot revert (a message broker: delivered messages cannot be
taken back) makes the command say so and change nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import ConfigError, EtlsyncError
from etlsync.core.revert import RevertReport, Rewind, reversible
from etlsync.core.stages import stage_name
from etlsync.log import get_logger
from etlsync.service.clock import Clock, SystemClock
from etlsync.service.execution import run_context
from etlsync.service.project import Project
from etlsync.service.state import LogLine, RunRecord, StateStore

log = get_logger(component="rollback")


class RollbackRefused(EtlsyncError):
    """The run cannot be rolled back (the message says why); nothing was changed."""


@dataclass
class RollbackResult:
    run: RunRecord
    reports: list[RevertReport] = field(default_factory=list)
    checkpoint: str = ""

    def __str__(self) -> str:
        lines = [f"rolled back run {self.run.id} of job {self.run.job}"]
        lines += [f"  {r}" for r in self.reports]
        lines.append(f"  checkpoint: {self.checkpoint}")
        return "\n".join(lines)


async def rollback(project: Project, store: StateStore, run_id: str, *, force: bool = False,
                   clock: Clock | None = None, env: Mapping[str, str] | None = None
                   ) -> RollbackResult:
    """Revert run ``run_id`` (see the module's description).

    :raises RollbackRefused: naming why; nothing was changed.
    """
    clock = clock or SystemClock()
    run = await store.get_run(run_id)
    if run is None:
        raise RollbackRefused(f"no run {run_id!r} in the history (or the prefix is ambiguous)")
    if not run.status.finished:
        raise RollbackRefused(f"run {run.id} is {run.status.value}: cancel it or wait for it")
    if run.rolled_back_at is not None:
        raise RollbackRefused(f"run {run.id} was rolled back already")
    if not force:
        for later in await store.runs(job=run.job, limit=1000):
            if later.id == run.id:
                break
            if later.started_at is not None and later.rolled_back_at is None and \
                    later.status.finished and (later.rows_written or later.journal):
                raise RollbackRefused(f"run {later.id} of job {run.job} ran after run {run.id}: "
                                      "roll it back first (or --force)")
    entry = project.job(run.job)
    built = entry.build(run_context(run), env)
    cannot = [(p.key_path, p.type) for s, p in zip(built.sinks, [x for x in built.stages
                                                                    if x.kind == "sink"],
                                                   strict=True) if reversible(s) is None]
    if cannot:
        where = ", ".join(f"{k} (type {t})" for k, t in cannot)
        raise RollbackRefused(f"run {run.id} of job {run.job} cannot be rolled back: {where} "
                              "cannot take back what a run wrote (e.g. messages once delivered);"
                              " nothing was changed")
    if not run.journal:
        raise RollbackRefused(f"run {run.id} did not record what it changed (journal off, or "
                              "its journal was forgotten after state.retention.journal); "
                              "nothing was changed")
    holder = f"rollback-{socket.gethostname()}-{os.getpid()}"
    token = await store.acquire_lease(run.job, holder, 300.0)
    if token is None:
        raise RollbackRefused(f"job {run.job} is running (its lease is held): wait or cancel it")
    try:
        pipeline = built.pipeline()
        cp_store, owner = pipeline.resolve_checkpoint_store()
        before = None if run.checkpoint_before is None else Checkpoint.decode(run.checkpoint_before)
        result = RollbackResult(run)
        for i, sink in enumerate(built.sinks):
            target = reversible(sink)
            assert target is not None
            rewind = Rewind(run.job, before) if i == owner else None
            result.reports.append(await target.revert(run.id, rewind, force=force))
            log.info("reverted", run=run.id, sink=stage_name(sink))
        if owner is None:
            try:
                if before is None:
                    await cp_store.reset(run.job)
                else:
                    await cp_store.commit(run.job, before)
            finally:
                await cp_store.close()
        result.checkpoint = "rewound to the run's start" + (
            " (the beginning)" if before is None else f" ({before.position!r})")
        run.rolled_back_at, run.journal = clock.now(), False
        run.note = ((run.note + "; ") if run.note else "") + "rolled back"
        await store.update_run(run, "rolled_back_at", "journal", "note", fenced=False)
        await store.add_logs([LogLine(run.id, clock.now(), "info",
                                      f"rolled back: {'; '.join(map(str, result.reports))}")])
        return result
    finally:
        await store.release_lease(run.job, holder, token)


async def forget_journals(project: Project, store: StateStore, before: float,
                          env: Mapping[str, str] | None = None) -> int:
    """Drop the journals (prior values, kept tables) of runs that ended before ``before``."""
    dropped = 0
    by_job: dict[str, list[RunRecord]] = {}
    for run in await store.journaled_before(before):
        by_job.setdefault(run.job, []).append(run)
    for job, runs in by_job.items():
        entry = project.jobs.get(job)
        if entry is None:
            continue
        try:
            built = entry.build(run_context(runs[0]), env)
        except ConfigError as exc:
            log.error("journal retention: cannot build job", job=job, error=str(exc))
            continue
        ids = [r.id for r in runs]
        for sink in built.sinks:
            target = reversible(sink)
            if target is not None:
                dropped += await target.forget(ids)
        for run in runs:
            run.journal = False
            run.note = ((run.note + "; ") if run.note else "") + "journal expired"
            await store.update_run(run, "journal", "note", fenced=False)
    return dropped

