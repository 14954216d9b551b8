"""``etlsync rollback RUN_ID``: revert what one run wrote and rewind its checkpoint."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from etlsync.cli._base import EXIT_FAILED, EXIT_OK, Command, err
from etlsync.cli.runs import with_store
from etlsync.core.revert import RevertError
from etlsync.jobs.env import Redactor


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN_ID", help="the run (its id or a unique prefix)")
    p.add_argument("-p", "--project", default=".", help="the project folder (default: here)")
    p.add_argument("--force", action="store_true",
                   help="also when later runs wrote after it (their changes to the same rows "
                        "are overwritten by the prior values)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _rollback(args: argparse.Namespace, redact: Redactor) -> int:
    async def main(project: Any, store: Any) -> int:
        from etlsync.service import RollbackRefused, load_project, rollback

        project = load_project(project.path)
        redact.secrets |= project.redact.secrets
        try:
            result = await rollback(project, store, args.run_id, force=args.force)
        except (RollbackRefused, RevertError) as exc:
            err(redact(f"cannot roll back: {exc}"))
            return EXIT_FAILED
        if args.json:
            print(redact(json.dumps({"run_id": result.run.id, "job": result.run.job,
                                     "reports": [str(r) for r in result.reports],
                                     "checkpoint": result.checkpoint})))
        else:
            print(redact(str(result)))
        return EXIT_OK
    return asyncio.run(with_store(args.project, main))


COMMANDS = (Command("rollback", "revert what one run wrote and rewind its checkpoint",
                    _arguments, _rollback, order=22),)
