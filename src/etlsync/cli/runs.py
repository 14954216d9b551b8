"""``etlsync runs`` and ``etlsync runs show ID``: the run history of a project."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from etlsync.cli._base import EXIT_FAILED, EXIT_OK, Command, err
from etlsync.core.errors import ConfigError
from etlsync.jobs.env import Redactor


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="*", metavar="show ID",
                   help="nothing: the latest runs; 'show ID': one run with its log lines")
    p.add_argument("-p", "--project", default=".", help="the project folder (default: here)")
    p.add_argument("--job", help="only this job's runs")
    p.add_argument("--status", help="only runs with these statuses (comma-separated)")
    p.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")


async def with_store(project_path: str, fn: Callable[[Any, Any], Awaitable[int]]) -> int:
    """Open the project's state database, run ``fn(project, store)``, close it."""
    from etlsync.service import load_project

    project = load_project(project_path, validate_jobs=False)
    store = project.state_store()
    await store.open()
    try:
        return await fn(project, store)
    finally:
        await store.close()


def _runs(args: argparse.Namespace, redact: Redactor) -> int:
    if args.what and (args.what[0] != "show" or len(args.what) != 2):
        raise ConfigError("usage: etlsync runs [show ID] [--json]")
    return asyncio.run(with_store(args.project, lambda p, s: _main(args, s, redact)))


async def _main(args: argparse.Namespace, store: Any, redact: Redactor) -> int:
    from etlsync.service.state import effective_status, iso, live_instance_ids

    live = await live_instance_ids(store)
    if args.what:
        run = await store.get_run(args.what[1])
        if run is None:
            err(f"error: no run {args.what[1]!r} (or the prefix is ambiguous)")
            return EXIT_FAILED
        lines = await store.logs(run.id)
        if args.json:
            out = run.to_dict() | {"effective_status": effective_status(run, live),
                                   "logs": [x.to_dict() for x in lines]}
            print(redact(json.dumps(out, default=str)))
            return EXIT_OK
        d = run.to_dict()
        d["status"] = effective_status(run, live)
        for key in ("id", "job", "status", "trigger", "attempt", "retry_of", "queued_at",
                    "started_at", "ended_at", "seconds", "scheduled_for", "window_start",
                    "window_end", "instance", "fence", "rows_read", "rows_written",
                    "rows_rejected", "rows_filtered", "error", "note", "journal",
                    "rolled_back_at", "checkpoint_before", "checkpoint_after", "context"):
            if d.get(key) not in (None, "", {}):
                print(redact(f"{key:>17}: {d[key]}"))
        print("         log:")
        for line in lines:
            print(redact(f"  {iso(line.at)} {line.level:<7} {line.message}"))
        return EXIT_OK
    status = [s for s in (args.status or "").split(",") if s]
    runs = await store.runs(job=args.job, status=status, limit=args.limit)
    if args.json:
        print(redact(json.dumps([r.to_dict() | {"effective_status": effective_status(r, live)}
                                 for r in runs], default=str)))
        return EXIT_OK
    print(f"{'ID':<16}  {'JOB':<20}  {'STATUS':<12}  {'TRIGGER':<10}  {'STARTED':<19}  "
          f"{'SECONDS':>8}  {'READ':>9}  {'WRITTEN':>9}")
    for r in runs:
        started = (iso(r.started_at) or "")[:19].replace("T", " ")
        took = "" if r.started_at is None or r.ended_at is None else \
            f"{r.ended_at - r.started_at:.2f}"
        flag = " (rolled back)" if r.rolled_back_at else ""
        print(redact(f"{r.id:<16}  {r.job:<20}  {effective_status(r, live):<12}  "
                     f"{r.trigger:<10}  {started:<19}  {took:>8}  {r.rows_read:>9,}  "
                     f"{r.rows_written:>9,}{flag}"))
    return EXIT_OK


COMMANDS = (Command("runs", "the run history of a project (runs show ID: one run)",
                    _arguments, _runs, order=21),)
