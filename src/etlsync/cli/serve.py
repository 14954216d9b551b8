"""``etlsync serve PROJECT``: run a project's jobs until SIGTERM (docs/serve.md)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from etlsync.cli._base import EXIT_OK, Command, err
from etlsync.jobs.env import Redactor


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", nargs="?", default=".",
                   help="the project folder (or its project file); default: here")
    p.add_argument("--instance", metavar="ID", help="this instance's name in the history "
                   "(default: host-pid-random)")
    p.add_argument("--no-http", action="store_true", help="do not serve the HTTP API")
    p.add_argument("--drain", type=float, default=60.0, metavar="SECONDS",
                   help="how long SIGTERM waits for running pipelines to drain (default 60)")


def _serve(args: argparse.Namespace, redact: Redactor) -> int:
    from etlsync.service import Service, load_project

    project = load_project(args.project)
    redact.secrets |= project.redact.secrets
    service = Service(project, instance_id=args.instance, http=not args.no_http)
    redact.secrets |= service.redact.secrets
    service.capture_logs()  # the stages' warnings and errors go into their runs' log lines

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:  # a second signal: do not wait for the drain
                for ex in list(service.executions.values()):
                    if ex.task is not None:
                        ex.task.cancel()
            stop.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await service.start()
        where = "" if service.http is None else \
            f", HTTP on {service.http.host}:{service.http.port}"
        err(redact(f"serving {project.name}: {len(project.jobs)} job(s), state "
                   f"{service.store.db.url}, instance {service.instance_id}{where}"))
        sys.stderr.flush()
        try:
            await stop.wait()
            err("stopping: draining running jobs")
        finally:
            await service.stop(drain_seconds=args.drain)
    asyncio.run(main())
    return EXIT_OK


COMMANDS = (Command("serve", "run a project's jobs on their schedules and triggers",
                    _arguments, _serve, order=20),)
