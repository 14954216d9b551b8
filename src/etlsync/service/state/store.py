"""The state database: run history, log lines, schedules, instances, job leases with fencing
tokens, alert folding. One set of SQL statements for both drivers (SQLite by default,
PostgreSQL for several instances); each driver runs them (:class:`Database`).

Leases: a job's lease (``etlsync_leases``) is taken for every run, renewed by its instance's
heartbeat, and carries a **fencing token** that grows by one each time the lease changes hands.
The run's history row holds the token; every later write of that row requires the token to be
the lease's current one, so a paused or partitioned instance whose lease expired can neither
finish nor overwrite a run another instance took over. Lease times are the database's clock
(one clock for every instance).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from etlsync.service.state.records import (
    COLUMNS,
    LogLine,
    RunRecord,
    RunStatus,
    column_value,
    from_row,
    to_row,
)

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS etlsync_runs (id TEXT PRIMARY KEY, job TEXT NOT NULL, "
    "trigger TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL, "
    "queued_at DOUBLE PRECISION NOT NULL, started_at DOUBLE PRECISION, "
    "ended_at DOUBLE PRECISION, scheduled_for DOUBLE PRECISION, window_start DOUBLE PRECISION, "
    "window_end DOUBLE PRECISION, dedupe TEXT UNIQUE, instance TEXT, fence BIGINT, "
    "attempt INTEGER NOT NULL, retry_of TEXT, rows_read BIGINT NOT NULL, "
    "rows_written BIGINT NOT NULL, rows_rejected BIGINT NOT NULL, rows_filtered BIGINT NOT NULL, "
    "error TEXT, checkpoint_before TEXT, checkpoint_after TEXT, context TEXT, "
    "journal INTEGER NOT NULL, rolled_back_at DOUBLE PRECISION, note TEXT, "
    "cancel_requested INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS etlsync_runs_job ON etlsync_runs (job, queued_at)",
    "CREATE INDEX IF NOT EXISTS etlsync_runs_status ON etlsync_runs (status)",
    "CREATE TABLE IF NOT EXISTS etlsync_run_logs (run_id TEXT NOT NULL, "
    "at DOUBLE PRECISION NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS etlsync_run_logs_run ON etlsync_run_logs (run_id, at)",
    "CREATE TABLE IF NOT EXISTS etlsync_instances (id TEXT PRIMARY KEY, host TEXT NOT NULL, "
    "pid INTEGER NOT NULL, started_at DOUBLE PRECISION NOT NULL, "
    "expires_at DOUBLE PRECISION NOT NULL, stopped_at DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS etlsync_leases (job TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "token BIGINT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS etlsync_schedules (job TEXT PRIMARY KEY, "
    "last_fire DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS etlsync_alerts (key TEXT PRIMARY KEY, state TEXT NOT NULL)",
]

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM etlsync_runs"
_INSERT_RUN = (f"INSERT INTO etlsync_runs ({', '.join(COLUMNS)}) VALUES "
               f"({', '.join('?' * len(COLUMNS))}) ON CONFLICT DO NOTHING RETURNING id")
_ACTIVE = ("queued", "running")


class Database(ABC):
    """Runs the store's SQL: ``?`` placeholders and ``{now}`` (the database's clock in epoch
    seconds) are translated by each driver."""

    url: str
    """Where the database is, without credentials."""
    shared: bool
    """Several instances may use it at once (PostgreSQL)."""
    ordered: bool = False
    """Statements submitted together run in submission order (one connection)."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement (atomically) and return its rows (``RETURNING`` included)."""

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return the number of rows it changed."""

    @abstractmethod
    async def close(self) -> None: ...

    async def create(self, statements: Sequence[str]) -> None:
        """Create the store's tables (several instances may start at once)."""
        for sql in statements:
            await self.execute(sql)


class StateStore:
    """The service's view of the state database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def shared(self) -> bool:
        return self.db.shared

    async def open(self) -> None:
        await self.db.open()
        await self.db.create(SCHEMA)

    async def close(self) -> None:
        await self.db.close()

    async def now(self) -> float:
        rows = await self.db.fetch("SELECT {now}")
        return float(rows[0][0])

    # -- runs --------------------------------------------------------------------------
    async def create_run(self, run: RunRecord) -> bool:
        """Insert ``run``; ``False`` when a run with its ``dedupe`` key exists already (another
        instance, or an earlier delivery, created it)."""
        return bool(await self.db.fetch(_INSERT_RUN, *to_row(run)))

    async def update_run(self, run: RunRecord, *fields: str, fenced: bool = True) -> bool:
        """Write ``fields`` of ``run``. With ``fenced`` (a run holding a lease), only while its
        fencing token is still the job lease's: ``False`` means another instance took over."""
        sets = ", ".join(f"{f} = ?" for f in fields)
        args: list[Any] = [column_value(run, f) for f in fields]
        sql = f"UPDATE etlsync_runs SET {sets} WHERE id = ?"
        args.append(run.id)
        if fenced and run.fence is not None:
            sql += (" AND fence = ? AND EXISTS (SELECT 1 FROM etlsync_leases l WHERE "
                    "l.job = etlsync_runs.job AND l.token = etlsync_runs.fence AND l.holder = ? "
                    "AND l.expires_at >= {now})")
            args += [run.fence, run.instance]
        return await self.db.execute(sql, *args) > 0

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self.db.fetch(f"{_SELECT} WHERE id = ?", run_id)
        if not rows and len(run_id) >= 4:  # a unique prefix, as shown by `etlsync runs`
            rows = await self.db.fetch(f"{_SELECT} WHERE id LIKE ? LIMIT 2", run_id + "%")
            if len(rows) > 1:
                return None
        return from_row(rows[0]) if rows else None

    async def run_by_dedupe(self, dedupe: str) -> RunRecord | None:
        rows = await self.db.fetch(f"{_SELECT} WHERE dedupe = ?", dedupe)
        return from_row(rows[0]) if rows else None

    async def runs(self, *, job: str | None = None, status: Sequence[str] = (),
                   instance: str | None = None, limit: int = 50,
                   before: float | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        where: list[str] = []
        args: list[Any] = []
        if job is not None:
            where.append("job = ?")
            args.append(job)
        if status:
            where.append(f"status IN ({', '.join('?' * len(status))})")
            args += list(status)
        if instance is not None:
            where.append("instance = ?")
            args.append(instance)
        if before is not None:
            where.append("queued_at < ?")
            args.append(before)
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.db.fetch(f"{_SELECT}{cond} ORDER BY queued_at DESC, id DESC LIMIT ?",
                                   *args, limit)
        return [from_row(r) for r in rows]

    async def last_finished(self, job: str) -> RunRecord | None:
        rows = await self.db.fetch(
            f"{_SELECT} WHERE job = ? AND status NOT IN ('queued', 'running') "
            "ORDER BY ended_at DESC LIMIT 1", job)
        return from_row(rows[0]) if rows else None

    async def add_logs(self, lines: Sequence[LogLine]) -> None:
        for i in range(0, len(lines), 200):
            chunk = lines[i:i + 200]
            await self.db.execute(
                "INSERT INTO etlsync_run_logs (run_id, at, level, message) VALUES "
                f"{', '.join(['(?, ?, ?, ?)'] * len(chunk))}",
                *[v for x in chunk for v in (x.run_id, x.at, x.level, x.message)])

    async def logs(self, run_id: str) -> list[LogLine]:
        rows = await self.db.fetch("SELECT run_id, at, level, message FROM etlsync_run_logs "
                                   "WHERE run_id = ? ORDER BY at", run_id)
        return [LogLine(*r) for r in rows]

    async def request_cancel(self, run_id: str) -> bool:
        return await self.db.execute(
            "UPDATE etlsync_runs SET cancel_requested = 1 WHERE id = ? AND status IN "
            "('queued', 'running')", run_id) > 0

    async def cancel_requests(self, instance: str) -> list[str]:
        rows = await self.db.fetch("SELECT id FROM etlsync_runs WHERE instance = ? AND "
                                   "cancel_requested = 1 AND status IN ('queued', 'running')",
                                   instance)
        return [r[0] for r in rows]

    # -- schedules ---------------------------------------------------------------------
    async def last_fire(self, job: str) -> float | None:
        rows = await self.db.fetch("SELECT last_fire FROM etlsync_schedules WHERE job = ?", job)
        return float(rows[0][0]) if rows else None

    async def set_last_fires(self, fires: Mapping[str, float]) -> None:
        """Record the last schedule fire handled, per job (never moving backwards)."""
        items = list(fires.items())
        for i in range(0, len(items), 200):
            chunk = items[i:i + 200]
            await self.db.execute(
                "INSERT INTO etlsync_schedules (job, last_fire) VALUES "
                f"{', '.join(['(?, ?)'] * len(chunk))} ON CONFLICT (job) DO UPDATE SET "
                "last_fire = excluded.last_fire WHERE etlsync_schedules.last_fire < "
                "excluded.last_fire", *[v for pair in chunk for v in pair])

    # -- instances and leases ------------------------------------------------------------
    async def register_instance(self, instance: str, host: str, pid: int, started: float,
                                ttl: float) -> None:
        await self.db.execute("INSERT INTO etlsync_instances (id, host, pid, started_at, "
                              "expires_at) VALUES (?, ?, ?, ?, {now} + ?)", instance, host, pid,
                              started, ttl)

    async def live_instances(self) -> list[tuple[str, str, int]]:
        rows = await self.db.fetch("SELECT id, host, pid FROM etlsync_instances WHERE "
                                   "expires_at >= {now} AND stopped_at IS NULL")
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def expire_instance(self, instance: str) -> None:
        """Declare ``instance`` dead now (its process is gone): its leases expire with it."""
        await self.db.execute("UPDATE etlsync_instances SET expires_at = 0 WHERE id = ?",
                              instance)
        await self.db.execute("UPDATE etlsync_leases SET expires_at = 0 WHERE holder = ?",
                              instance)

    async def stop_instance(self, instance: str, when: float) -> None:
        await self.db.execute("UPDATE etlsync_instances SET stopped_at = ?, expires_at = 0 "
                              "WHERE id = ?", when, instance)

    async def heartbeat(self, instance: str, ttl: float) -> dict[str, int]:
        """Extend the instance's life and its leases; returns the leases it still holds
        (job -> token). A lease missing from the answer expired: its run must stop."""
        await self.db.execute("UPDATE etlsync_instances SET expires_at = {now} + ? WHERE id = ? "
                              "AND stopped_at IS NULL", ttl, instance)
        rows = await self.db.fetch("UPDATE etlsync_leases SET expires_at = {now} + ? WHERE "
                                   "holder = ? AND expires_at >= {now} RETURNING job, token",
                                   ttl, instance)
        return {r[0]: int(r[1]) for r in rows}

    async def acquire_lease(self, job: str, holder: str, ttl: float) -> int | None:
        """Take ``job``'s lease if it is free or expired; the new fencing token, or ``None``
        when another holder has it."""
        rows = await self.db.fetch(
            "INSERT INTO etlsync_leases (job, holder, token, expires_at) VALUES (?, ?, 1, "
            "{now} + ?) ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, "
            "token = etlsync_leases.token + 1, expires_at = excluded.expires_at "
            "WHERE etlsync_leases.expires_at < {now} RETURNING token", job, holder, ttl)
        return int(rows[0][0]) if rows else None

    async def start_run(self, run: RunRecord, holder: str, ttl: float,
                        started_at: float) -> int | None:
        """Take the run's job lease and mark the run ``running`` under it; the fencing token,
        or ``None`` (nothing changed) when another holder has the lease. On a database that
        runs statements in order both go in one round trip."""
        held = ("EXISTS (SELECT 1 FROM etlsync_leases WHERE job = ? AND holder = ? AND "
                "expires_at >= {now})")
        mark = ("UPDATE etlsync_runs SET status = 'running', started_at = ?, instance = ?, "
                "fence = (SELECT token FROM etlsync_leases WHERE job = ? AND holder = ?) "
                f"WHERE id = ? AND {held} RETURNING fence")
        args = (started_at, holder, run.job, holder, run.id, run.job, holder)
        if self.db.ordered:
            token, marked = await asyncio.gather(self.acquire_lease(run.job, holder, ttl),
                                                 self.db.fetch(mark, *args))
        else:
            token = await self.acquire_lease(run.job, holder, ttl)
            marked = [] if token is None else await self.db.fetch(mark, *args)
        if token is None or not marked:
            return None
        return int(marked[0][0])

    async def release_lease(self, job: str, holder: str, token: int) -> None:
        await self.db.execute("UPDATE etlsync_leases SET expires_at = 0 WHERE job = ? AND "
                              "holder = ? AND token = ?", job, holder, token)

    async def lease_holder(self, job: str) -> tuple[str, int, float] | None:
        rows = await self.db.fetch("SELECT holder, token, expires_at - {now} FROM "
                                   "etlsync_leases WHERE job = ? AND expires_at >= {now}", job)
        return (rows[0][0], int(rows[0][1]), float(rows[0][2])) if rows else None

    async def mark_lost(self, when: float) -> list[RunRecord]:
        """Runs still ``running`` whose lease expired: marked ``lost`` (exactly one instance
        wins each), returned so the winner can run the job again."""
        rows = await self.db.fetch(
            "UPDATE etlsync_runs SET status = 'lost', ended_at = ?, error = 'instance ' || "
            "coalesce(instance, 'unknown') || ' stopped renewing its lease while the run was running "
            "(killed, crashed or cut off); committed data stays, the job runs again from its "
            "checkpoint' WHERE status = 'running' AND NOT EXISTS (SELECT 1 FROM etlsync_leases l "
            "WHERE l.job = etlsync_runs.job AND l.token = etlsync_runs.fence AND "
            "l.expires_at >= {now}) RETURNING id", when)
        return [r for r in [await self.get_run(row[0]) for row in rows] if r is not None]

    async def adopt_queued(self, instance: str) -> list[RunRecord]:
        """Queued runs of instances that died: now this instance's."""
        rows = await self.db.fetch(
            "UPDATE etlsync_runs SET instance = ? WHERE status = 'queued' AND (instance IS NULL "
            "OR instance NOT IN (SELECT id FROM etlsync_instances WHERE expires_at >= {now} AND "
            "stopped_at IS NULL)) RETURNING id", instance)
        return [r for r in [await self.get_run(row[0]) for row in rows] if r is not None]

    # -- alerts ------------------------------------------------------------------------
    async def alert_state(self, key: str) -> dict[str, Any] | None:
        rows = await self.db.fetch("SELECT state FROM etlsync_alerts WHERE key = ?", key)
        return json.loads(rows[0][0]) if rows else None

    async def set_alert_state(self, key: str, state: dict[str, Any]) -> None:
        await self.db.execute("INSERT INTO etlsync_alerts (key, state) VALUES (?, ?) ON "
                              "CONFLICT (key) DO UPDATE SET state = excluded.state", key,
                              json.dumps(state))

    async def alert_keys(self) -> list[str]:
        return [r[0] for r in await self.db.fetch("SELECT key FROM etlsync_alerts")]

    # -- retention ---------------------------------------------------------------------
    async def journaled_before(self, when: float) -> list[RunRecord]:
        """Finished runs older than ``when`` whose journal is still kept."""
        rows = await self.db.fetch(f"{_SELECT} WHERE journal = 1 AND ended_at < ? AND status "
                                   "NOT IN ('queued', 'running')", when)
        return [from_row(r) for r in rows]

    async def prune(self, runs_before: float, logs_before: float) -> tuple[int, int]:
        """Forget finished runs older than ``runs_before`` and log lines older than
        ``logs_before``; returns (runs, lines) removed."""
        lines = await self.db.execute(
            "DELETE FROM etlsync_run_logs WHERE at < ? OR run_id IN (SELECT id FROM etlsync_runs "
            "WHERE ended_at < ? AND status NOT IN ('queued', 'running'))", logs_before,
            runs_before)
        runs = await self.db.execute("DELETE FROM etlsync_runs WHERE ended_at < ? AND status "
                                     "NOT IN ('queued', 'running')", runs_before)
        return runs, lines


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def live_instance_ids(store: StateStore) -> set[str]:
    """Instances whose lease holds and (on this host) whose process exists."""
    here = socket.gethostname()
    return {i for i, host, pid in await store.live_instances()
            if host != here or process_alive(pid)}


def effective_status(run: RunRecord, live: set[str]) -> str:
    """``run``'s status, saying when a ``running`` run's instance is gone (it is marked
    ``lost`` by the next instance that starts)."""
    if run.status is RunStatus.RUNNING and run.instance not in live:
        return "running (instance gone: lost)"
    return run.status.value
