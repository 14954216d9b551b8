"""What every ``etlsync`` command module declares, and the exit codes they share.

A module of this package that defines ``COMMANDS`` (a tuple of :class:`Command`) adds its
commands to ``etlsync``; nothing else needs to change to add one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from etlsync.jobs.env import Redactor

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class Command:
    """One subcommand.

    :param arguments: adds the command's arguments to its parser.
    :param run: runs it; returns the exit code (raise :class:`~etlsync.ConfigError` for bad
        input: the entry point prints it as one line and exits 2).
    :param order: position in ``etlsync --help``.
    """

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Redactor], int]
    order: int = 50


def err(text: str) -> None:
    print(text, file=sys.stderr)
