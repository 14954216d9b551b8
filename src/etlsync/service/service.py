"""The service: schedules, triggers, the queue, executions, recovery, retention.

>>> service = Service(load_project("shop/"))
>>> await service.run_until_stopped()       # or: await service.start(); ...; await service.stop()

The Python API (the web console builds on it): :meth:`Service.jobs`,
:meth:`Service.trigger`, :meth:`Service.cancel`, :meth:`Service.runs`, :meth:`Service.run`,
:meth:`Service.logs`, :meth:`Service.rollback`, :attr:`Service.events` (live events).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from etlsync.core.errors import ConfigError
from etlsync.log import get_logger
from etlsync.service.alerts import Alert, Alerts, build_channels
from etlsync.service.clock import Clock, SystemClock
from etlsync.service.events import EventBus, ServiceEvent
from etlsync.service.execution import Execution, run_context
from etlsync.service.followups import after_run, check_running, window_of
from etlsync.service.project import JobEntry, Project, seconds
from etlsync.service.queue import QueuedRun, RunQueue
from etlsync.service.schedule import Fire, due_fires
from etlsync.service.state import LogLine, RunRecord, RunStatus, StateStore, iso, process_alive

log = get_logger(component="serve")


@dataclass(frozen=True)
class JobInfo:
    name: str
    schedule: str | None
    next_fire: str | None
    depends_on: list[str]
    triggers: list[str]
    continuous: bool
    journal: bool
    priority: int
    resources: list[str]
    active: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class AnotherInstance(ConfigError):
    """A second ``serve`` on a SQLite state database that a live one already uses."""


class Service:
    """Runs a project's jobs until stopped.

    :param clock: the scheduler's clock (tests pass a :class:`~etlsync.service.clock.ManualClock`).
    :param state: the state database (default: the project's ``state.url``).
    :param http: serve the HTTP API when the project configures ``http`` (``False``: never).
    :param watch: watch directories of file triggers (``False``: only scan at start).
    """

    def __init__(self, project: Project, *, clock: Clock | None = None,
                 state: StateStore | None = None, instance_id: str | None = None,
                 env: Mapping[str, str] | None = None, http: bool = True,
                 watch: bool = True) -> None:
        spec = project.spec
        self.project, self.clock, self.env = project, clock or SystemClock(), env
        self.redact = project.redact
        self.store: StateStore = state or project.state_store()
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}-" \
                                          f"{secrets.token_hex(2)}"
        self.lease_ttl = seconds(spec.state.lease_ttl, "state.lease_ttl") or 30.0
        self.heartbeat_every = seconds(spec.state.heartbeat, "state.heartbeat") or 5.0
        if self.heartbeat_every * 2 >= self.lease_ttl:
            raise ConfigError("state.heartbeat: must be under half of state.lease_ttl")
        self.lease_margin = min(self.heartbeat_every, self.lease_ttl / 4)
        self.queue = RunQueue(spec.queue.concurrency, spec.queue.resources)
        self.events = EventBus()
        self.alerts = Alerts(spec.alerts, build_channels(spec.alerts, self.redact,
                                                         str(project.root)),
                             self.store, self.clock, project.name)
        self.http_enabled, self.watch = http and spec.http is not None, watch
        self.executions: dict[str, Execution] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
        self._wake = asyncio.Event()
        self._dispatch_wake = asyncio.Event()
        self._last_fire: dict[str, float] = {}
        self._stopping = False
        self._started = False
        self._idle = asyncio.Event()
        self._triggers: list[Any] = []
        self._records: dict[str, RunRecord] = {}
        self._busy = 0
        self._deferred = 0
        """Runs waiting for a lease held elsewhere, out of the queue until they ask again."""
        self._completion: dict[str, list[tuple[JobEntry, Any]]] = {}
        """Job -> the (job, trigger) pairs that run when it completes."""
        for entry in project.jobs.values():
            for t in entry.spec.triggers:
                if t.type == "job" and t.job:
                    self._completion.setdefault(t.job, []).append((entry, t))
        """Schedulers and triggers queueing runs right now (for :meth:`wait_idle`)."""
        self._wake_at: tuple[float, asyncio.Task[None]] | None = None
        """Queued runs of this instance, by id, until admitted."""
        self.http: Any = None

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Open the state database, recover what a dead instance left, start the loops."""
        await self.store.open()
        await self._claim_instance()
        self._started = True
        await self._recover()
        now = self.clock.now()
        for name, entry in self.project.jobs.items():
            if entry.schedule is not None:
                last = await self.store.last_fire(name)
                if last is None:
                    await self.store.set_last_fires({name: now})
                self._last_fire[name] = now if last is None else last
                await self._fire(entry, now)  # what was missed while no instance ran
            if entry.continuous:
                await self.enqueue(entry, "continuous")
        await self._resume_stopped()
        self._loops = [asyncio.create_task(coro, name=f"etlsync-serve-{n}") for n, coro in (
            ("scheduler", self._scheduler()), ("dispatcher", self._dispatcher()),
            ("heartbeat", self._heartbeat()), ("retention", self._retention()))]
        from etlsync.service.triggers import start_triggers
        self._triggers = await start_triggers(self)
        if self.http_enabled:
            from etlsync.service.http import HttpApi
            self.http = HttpApi(self)
            await self.http.start()
        self._kick()
        log.info("serving", project=self.project.name, instance=self.instance_id,
                 state=self.store.db.url, jobs=len(self.project.jobs))

    async def stop(self, *, drain_seconds: float = 60.0) -> None:
        """Stop triggers and schedules, stop running pipelines gracefully (drained and
        committed; recorded as ``stopped``), and close. Queued runs stay queued."""
        if not self._started:
            return
        self._stopping = True
        if self.http is not None:
            await self.http.stop()
        for trigger in self._triggers:
            with contextlib.suppress(Exception):
                await trigger.stop()
        for ex in list(self.executions.values()):
            ex.stop(RunStatus.STOPPED, "shutdown: stopping gracefully")
        running = [t for t in self._tasks if not t.done()]
        if running:
            _, pending = await asyncio.wait(running, timeout=drain_seconds)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._wake_at is not None:
            self._wake_at[1].cancel()
        for t in self._loops:
            t.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.stop_instance(self.instance_id, self.clock.now())
        await self.store.close()
        self._started = False
        log.info("stopped", instance=self.instance_id)

    async def run_until_stopped(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def _claim_instance(self) -> None:
        if not self.store.shared:
            for other, host, pid in await self.store.live_instances():
                if host == socket.gethostname() and not process_alive(pid):
                    await self.store.expire_instance(other)
                else:
                    raise AnotherInstance(
                        f"another etlsync serve ({other}, pid {pid} on {host}) uses the SQLite "
                        f"state database {self.store.db.url}: one instance per SQLite file "
                        "(several instances need a PostgreSQL state database)")
        await self.store.register_instance(self.instance_id, socket.gethostname(), os.getpid(),
                                           self.clock.now(), self.lease_ttl)

    # -- the Python API ----------------------------------------------------------------
    def jobs(self) -> list[JobInfo]:
        out = []
        for name, e in sorted(self.project.jobs.items()):
            nxt = None
            if e.schedule is not None and name in self._last_fire:
                nxt = iso(e.schedule.next_after(self._last_fire[name]))
            out.append(JobInfo(name, e.schedule.describe() if e.schedule else (
                "continuous" if e.continuous else None), nxt, e.spec.depends_on,
                [t.type for t in e.spec.triggers], e.continuous, e.journal, e.spec.priority,
                e.spec.resources, self.queue.has_job(name)))
        return out

    async def trigger(self, job: str, *, params: Mapping[str, Any] | None = None,
                      trigger: str = "api", priority: int | None = None,
                      dedupe: str | None = None) -> RunRecord | None:
        """Queue a run of ``job`` now (``params`` become ``${trigger.x}``); ``None`` when
        ``dedupe`` names a run that exists already."""
        return await self.enqueue(self.project.job(job), trigger, context=dict(params or {}),
                                  priority=priority, dedupe=dedupe)

    async def cancel(self, run_id: str) -> bool:
        """Cancel a queued run, or stop a running one (drained, committed, ``cancelled``).
        A run of another instance is asked to stop through the state database."""
        run = await self.store.get_run(run_id)
        if run is None or run.status.finished:
            return False
        if self.queue.cancel(run.id) is not None:
            run.status, run.ended_at = RunStatus.CANCELLED, self.clock.now()
            run.note = "cancelled while queued"
            await self.store.update_run(run, "status", "ended_at", "note", fenced=False)
            self.publish("run_finished", run)
            self._kick()
            return True
        ex = self.executions.get(run.id)
        if ex is not None:
            ex.stop(RunStatus.CANCELLED, "cancelled: stopping gracefully")
            return True
        return await self.store.request_cancel(run.id)

    async def runs(self, *, job: str | None = None, status: Sequence[str] = (),
                   limit: int = 50) -> list[RunRecord]:
        return await self.store.runs(job=job, status=status, limit=limit)

    async def run(self, run_id: str) -> RunRecord | None:
        return await self.store.get_run(run_id)

    async def logs(self, run_id: str) -> list[LogLine]:
        return await self.store.logs(run_id)

    async def rollback(self, run_id: str, *, force: bool = False) -> Any:
        from etlsync.service.rollback import rollback
        result = await rollback(self.project, self.store, run_id, force=force, clock=self.clock,
                                env=self.env)
        self.publish("rollback", result.run, reports=[str(r) for r in result.reports])
        return result

    def capture_logs(self) -> None:
        """Make the warnings and errors that running jobs log (structlog) part of their runs'
        log lines (added in front of structlog's configured processors)."""
        import structlog

        from etlsync.service.execution import LogCapture

        config = structlog.get_config()
        processors = [p for p in config["processors"] if not isinstance(p, LogCapture)]
        structlog.configure(processors=[LogCapture(self), *processors])

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is queued or running here (tests; finite jobs only)."""
        async with asyncio.timeout(timeout):
            while self._busy or self._deferred or self.queue.waiting or self.executions or any(
                    not t.done() for t in self._tasks):
                self._idle.clear()
                await self._idle.wait()

    # -- queueing ----------------------------------------------------------------------
    def run_context(self, run: RunRecord) -> dict[str, Any]:
        """What ``${run.x}``, ``${trigger.x}`` and ``${upstream.job.x}`` read for ``run``."""
        return run_context(run)

    async def enqueue(self, entry: JobEntry, trigger: str, *, fire: Fire | None = None,
                      context: dict[str, Any] | None = None, priority: int | None = None,
                      dedupe: str | None = None, retry_of: str | None = None,
                      attempt: int = 1, not_before: float = 0.0,
                      window: tuple[float, float] | None = None) -> RunRecord | None:
        """Record a queued run and put it in the queue; ``None`` if ``dedupe`` existed."""
        self._busy += 1
        try:
            return await self._enqueue(entry, trigger, fire, context, priority, dedupe, retry_of,
                                       attempt, not_before, window)
        finally:
            self._busy -= 1
            self._signal_idle()

    async def _enqueue(self, entry: JobEntry, trigger: str, fire: Fire | None,
                       context: dict[str, Any] | None, priority: int | None,
                       dedupe: str | None, retry_of: str | None, attempt: int,
                       not_before: float, window: tuple[float, float] | None
                       ) -> RunRecord | None:
        now = self.clock.now()
        run = RunRecord(id=new_run_id(), job=entry.name, trigger=trigger,
                        priority=entry.spec.priority if priority is None else priority,
                        queued_at=now, dedupe=dedupe, instance=self.instance_id,
                        attempt=attempt, retry_of=retry_of, context=context or {})
        if fire is not None:
            run.scheduled_for, run.window_start, run.window_end = \
                fire.scheduled_for, fire.window_start, fire.window_end
            if fire.misfired:
                run.note = f"misfire ({entry.spec.misfire.value}) after downtime"
        elif window is not None:
            run.window_start, run.window_end = window
        if not await self.store.create_run(run):
            return None
        self._put(run, entry, not_before)
        self.publish("run_queued", run)
        return run

    def _put(self, run: RunRecord, entry: JobEntry, not_before: float = 0.0) -> None:
        self.queue.put(QueuedRun(run_id=run.id, job=run.job, priority=run.priority,
                                 queued_at=run.queued_at, resources=tuple(entry.spec.resources),
                                 continuous=entry.continuous, not_before=not_before))
        self._records[run.id] = run
        self._kick()

    def _put_back(self, run: RunRecord, entry: JobEntry) -> None:
        self._deferred -= 1
        if not self._stopping:
            self._put(run, entry)

    def _kick(self) -> None:
        self._dispatch_wake.set()

    def publish(self, kind: str, run: RunRecord | None, **detail: Any) -> None:
        self.events.publish(ServiceEvent(kind, self.clock.now(), run, detail))

    # -- loops -------------------------------------------------------------------------
    async def _dispatcher(self) -> None:
        while True:
            await self._dispatch_wake.wait()
            self._dispatch_wake.clear()
            if self._stopping:
                continue
            for item in self.queue.admit(self.clock.now()):
                run = self._records.pop(item.run_id, None)
                if run is None:
                    self.queue.done(item.run_id)
                    continue
                task = asyncio.create_task(self._execute(run, item))
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
            wake = self.queue.next_wakeup()
            if wake is not None and (self._wake_at is None or wake < self._wake_at[0]
                                     or self._wake_at[1].done()):
                if self._wake_at is not None:
                    self._wake_at[1].cancel()
                self._wake_at = (wake, asyncio.create_task(self._kick_at(wake)))
            self._signal_idle()

    async def _kick_at(self, when: float) -> None:
        await self.clock.sleep_until(when)
        self._kick()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("run task failed", error=repr(task.exception()))
        self._kick()
        self._signal_idle()

    def _signal_idle(self) -> None:
        if not self._busy and not self._deferred and not self.queue.waiting and not self.executions and \
                all(t.done() for t in self._tasks):
            self._idle.set()

    async def _execute(self, run: RunRecord, item: QueuedRun) -> None:
        entry = self.project.jobs.get(run.job)
        if entry is None:
            self.queue.done(run.id)
            return
        ex = Execution(self, run, entry)
        self.executions[run.id] = ex
        try:
            try:
                got = await ex.acquire()
            except Exception as exc:  # noqa: BLE001 - the state database is away: retry soon
                log.error("cannot take the job's lease", job=run.job, error=str(exc))
                got = False
            if not got:  # another instance (or a rollback) has the job: ask again later
                holder = await self.store.lease_holder(run.job)
                wait = min(max(holder[2], 0.2), 5.0) if holder else 0.2
                self.queue.done(run.id)
                self._deferred += 1  # lease times are the database's: real seconds
                asyncio.get_running_loop().call_later(wait, self._put_back, run, entry)
                return
            ex.task = asyncio.current_task()
            finished = await ex.execute()
            self.queue.done(run.id)
            self.publish("run_finished", finished)
            await after_run(self, entry, finished)
        finally:
            self.executions.pop(run.id, None)
            self.queue.done(run.id)

    async def _scheduler(self) -> None:
        """Fire schedules. A fire on time takes the fast path (its window is the previous
        fire to this one); one found late (the process was suspended) goes through
        :func:`due_fires` and its misfire policy. The runs due at one moment are queued
        together, so their history rows share transactions."""
        heap: list[tuple[float, str]] = []
        upcoming: dict[str, Iterator[float]] = {}
        window_start: dict[str, float] = {}
        for name, entry in self.project.jobs.items():
            if entry.schedule is not None:
                upcoming[name] = entry.schedule.iter_after(self._last_fire[name])
                heap.append((next(upcoming[name]), name))
                window_start[name] = entry.schedule.previous(heap[-1][0])
        heapq.heapify(heap)
        while heap:
            await self.clock.sleep_until(heap[0][0])
            self._busy += 1
            try:
                now = self.clock.now()
                due: list[tuple[JobEntry, Fire]] = []
                late: list[JobEntry] = []
                while heap and heap[0][0] <= now:
                    t, name = heapq.heappop(heap)
                    entry = self.project.jobs[name]
                    if now - t <= entry.misfire_grace:
                        due.append((entry, Fire(t, window_start[name], t)))
                        self._last_fire[name] = t
                    else:
                        late.append(entry)
                for entry in late:
                    await self._fire(entry, now)
                    assert entry.schedule is not None
                    upcoming[entry.name] = entry.schedule.iter_after(self._last_fire[entry.name])
                await asyncio.gather(*(self.enqueue(
                    e, "schedule", fire=f, dedupe=f"schedule:{e.name}:{f.scheduled_for:.3f}")
                    for e, f in due))
                if due:
                    await self.store.set_last_fires({e.name: f.scheduled_for for e, f in due})
                for entry in [e for e, _ in due] + late:
                    nxt = next(upcoming[entry.name])
                    window_start[entry.name] = self._last_fire[entry.name]
                    heapq.heappush(heap, (nxt, entry.name))
            finally:
                self._busy -= 1
                self._signal_idle()

    async def _fire(self, entry: JobEntry, now: float) -> None:
        """Queue what is due for ``entry`` at ``now`` after a gap (start, suspension)."""
        assert entry.schedule is not None
        fires, last = due_fires(entry.schedule, self._last_fire[entry.name], now,
                                entry.spec.misfire, entry.misfire_grace, entry.spec.max_catch_up)
        for fire in fires:
            await self.enqueue(entry, "schedule", fire=fire,
                               dedupe=f"schedule:{entry.name}:{fire.scheduled_for:.3f}")
        if last != self._last_fire[entry.name]:
            self._last_fire[entry.name] = last
            await self.store.set_last_fires({entry.name: last})

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            try:
                await self.beat()
            except Exception as exc:  # noqa: BLE001 - the state database may be away a while
                log.error("heartbeat failed", error=f"{type(exc).__name__}: {exc}")

    async def beat(self) -> None:
        """One heartbeat: renew leases (runs whose lease was lost stop), take cancel requests,
        recover runs of dead instances, check lag and dead-letter alerts, send digests."""
        import time as _time
        started = _time.monotonic()
        held = await self.store.heartbeat(self.instance_id, self.lease_ttl)
        for ex in list(self.executions.values()):
            if ex.lease is None or ex.run.status is not RunStatus.RUNNING:
                continue
            if held.get(ex.run.job) == ex.lease.token:
                ex.lease.renewed(started)
            else:
                ex.lease.lost = True
                ex.stop(RunStatus.LOST, "lease lost (another instance took the job): stopping")
        for run_id in await self.store.cancel_requests(self.instance_id):
            if run_id in self.executions:
                self.executions[run_id].stop(RunStatus.CANCELLED, "cancel requested")
            elif self.queue.cancel(run_id) is not None:
                await self.cancel(run_id)
        await self._recover()
        for ex in list(self.executions.values()):
            await ex.flush_logs()
            await check_running(self, ex)
        await self.alerts.flush_due()

    async def _recover(self) -> None:
        """Runs a dead instance left: ``running`` ones are marked lost and run again (once:
        one instance wins each), ``queued`` ones are adopted. On a shared database an
        instance is dead when its lease expired; on SQLite also when its process is gone."""
        if not self.store.shared:  # one host: a process that is gone holds nothing
            host = socket.gethostname()
            for other, other_host, pid in await self.store.live_instances():
                if other != self.instance_id and other_host == host and not process_alive(pid):
                    await self.store.expire_instance(other)
        for lost in await self.store.mark_lost(self.clock.now()):
            entry = self.project.jobs.get(lost.job)
            self.publish("run_finished", lost)
            await self.alerts.emit(Alert("failure", lost.job, lost.error or "lost", lost.id))
            if entry is not None:
                await self.enqueue(entry, "recovery", context=lost.context, retry_of=lost.id,
                                   attempt=lost.attempt + 1, dedupe=f"recovery:{lost.id}",
                                   window=window_of(lost))
        for run in await self.store.adopt_queued(self.instance_id):
            entry = self.project.jobs.get(run.job)
            if entry is not None and run.id not in self._records and \
                    run.id not in self.executions:
                self._put(run, entry)

    async def _resume_stopped(self) -> None:
        for name, entry in self.project.jobs.items():
            if entry.continuous:
                continue
            last = await self.store.last_finished(name)
            if last is not None and last.status is RunStatus.STOPPED and \
                    not self.queue.has_job(name):
                await self.enqueue(entry, "resume", context=last.context, retry_of=last.id,
                                   dedupe=f"resume:{last.id}", window=window_of(last))

    async def _retention(self) -> None:
        from etlsync.service.rollback import forget_journals
        r = self.project.spec.state.retention
        while True:
            try:
                now = self.clock.now()
                await forget_journals(self.project, self.store,
                                      now - (seconds(r.journal, "state.retention.journal") or 0),
                                      self.env)
                await self.store.prune(now - (seconds(r.runs, "state.retention.runs") or 0),
                                       now - (seconds(r.logs, "state.retention.logs") or 0))
            except Exception as exc:  # noqa: BLE001 - retried at the next pass
                log.error("retention pass failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(3600)


def new_run_id() -> str:
    """Unique, and in creation order (so runs queued at one logical time sort as queued)."""
    global _last_id_ms
    ms = max(time.time_ns() // 1_000_000, _last_id_ms + 1)
    _last_id_ms = ms
    return f"{ms:011x}{secrets.token_hex(3)}"


_last_id_ms = 0
