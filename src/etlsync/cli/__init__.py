"""The ``etlsync`` command. Each module of this package adds its subcommands (``COMMANDS``).

Exit codes: 0 success (also a graceful stop by SIGTERM or Ctrl-C: drained and committed), 1
the run failed (one line naming the stage), 2 the job or the arguments are invalid (one line
naming the file and key), 130 interrupted without a graceful stop (a second signal).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback
from collections.abc import MutableMapping, Sequence
from typing import Any, TextIO

import structlog

from etlsync import __version__
from etlsync.cli._base import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Command,
    err,
)
from etlsync.core.errors import ConfigError, EtlsyncError, StageError
from etlsync.jobs.env import Redactor

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "Command", "main"]


def commands() -> list[Command]:
    """Every command the modules of this package declare, in ``--help`` order."""
    found: list[Command] = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            found.extend(getattr(importlib.import_module(f"{__name__}.{info.name}"),
                                 "COMMANDS", ()))
    return sorted(found, key=lambda c: (c.order, c.name))


def _parser(found: list[Command]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="etlsync", description="Run real-time ETL and CDC pipelines described by job files.")
    p.add_argument("--version", action="version", version=f"etlsync {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log more (-v: info, -vv: debug); logs go to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in found:
        command.arguments(sub.add_parser(command.name, help=command.help,
                                         description=command.help))
    return p


def _drop_reported_failure(logger: Any, method: str,
                           event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The CLI prints a failed run's cause itself, as one line: skip the runner's log of it."""
    if event.get("event") == "pipeline failed":
        raise structlog.DropEvent
    return event


def _configure_logging(verbose: int, redact: Redactor) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    quiet: list[Any] = [_drop_reported_failure] if verbose <= 0 else []
    structlog.configure(
        processors=[
            *quiet,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            redact.structlog_processor,
            structlog.dev.ConsoleRenderer(colors=_isatty(sys.stderr)),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``etlsync`` command; returns the exit code."""
    found = commands()
    args = _parser(found).parse_args(argv)
    command = next(c for c in found if c.name == args.command)
    redact = Redactor()
    was_configured, old = structlog.is_configured(), structlog.get_config()
    _configure_logging(args.verbose, redact)
    try:
        return command.run(args, redact)
    except ConfigError as exc:
        err(redact(f"error: {exc}"))
        return EXIT_CONFIG
    except StageError as exc:
        err(redact(f"error: stage {exc.stage!r} failed: {type(exc.cause).__name__}: "
                   f"{exc.cause}"))
        if args.verbose:
            err(redact("".join(traceback.format_exception(exc.cause))))
        return EXIT_FAILED
    except EtlsyncError as exc:
        err(redact(f"error: {type(exc).__name__}: {exc}"))
        return EXIT_FAILED
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line, traceback only when asked for
        err(redact(f"error: unexpected {type(exc).__name__}: {exc}"))
        if args.verbose:
            err(redact("".join(traceback.format_exception(exc))))
        return EXIT_FAILED
    finally:
        if was_configured:
            structlog.configure(**old)
        else:
            structlog.reset_defaults()
