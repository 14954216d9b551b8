"""``etlsync run`` and ``etlsync validate``."""

from __future__ import annotations

import argparse
import asyncio

import msgspec

from etlsync.cli._base import EXIT_FAILED, EXIT_OK, Command
from etlsync.core.errors import ConfigError
from etlsync.jobs.build import build_job
from etlsync.jobs.env import Redactor
from etlsync.jobs.runner import dry_run, format_dry_run, run_built
from etlsync.jobs.spec import load_job


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan, the schemas and the first rows; write nothing")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="rows to show with --dry-run (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _validate(args: argparse.Namespace, redact: Redactor) -> int:
    job = load_job(args.job)
    redact.secrets |= job.redact.secrets
    built = build_job(job)
    if args.json:
        print(redact(msgspec.json.encode(built.plan(), enc_hook=str).decode()))
    else:
        kinds = [f"{s.type}" for s in built.stages if s.kind != "checkpoint"]
        print(redact(f"ok: {job.path} (pipeline {job.name!r}): {' -> '.join(kinds)}"))
    return EXIT_OK


def _run(args: argparse.Namespace, redact: Redactor) -> int:
    job = load_job(args.job)
    redact.secrets |= job.redact.secrets
    built = build_job(job)
    if args.limit is not None and not args.dry_run:
        raise ConfigError("--limit: only applies to --dry-run (the rows it shows)")
    if args.dry_run:
        limit = 10 if args.limit is None else args.limit
        if limit < 0:
            raise ConfigError("--limit: expected a number >= 0")
        dr = asyncio.run(dry_run(built, limit))
        print(redact(dr.to_json() if args.json else format_dry_run(dr)))
        return EXIT_OK
    result = asyncio.run(run_built(built, progress=not args.no_progress and not args.json))
    print(redact(result.to_json() if args.json else str(result)))
    # a graceful stop (SIGTERM, Ctrl-C: drained, checkpoint committed) is a success
    return EXIT_FAILED if result.summary.status == "failed" else EXIT_OK


COMMANDS = (
    Command("run", "run a job file", _run_arguments, _run, order=10),
    Command("validate", "check a job file without running it", _validate_arguments, _validate,
            order=11),
)
