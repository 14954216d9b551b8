"""``etlsync codegen``: typed code from SQL queries (see :mod:`etlsync.codegen`)."""

from __future__ import annotations

import argparse
from typing import Any

from etlsync.cli._base import Command
from etlsync.jobs.env import Redactor


class _Sub:
    """Lets the codegen package add its arguments to the parser made for it."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_parser(self, name: str, **_: Any) -> argparse.ArgumentParser:
        return self.parser


def _arguments(p: argparse.ArgumentParser) -> None:
    from etlsync.codegen import cli

    cli.add_parser(_Sub(p))


def _run(args: argparse.Namespace, redact: Redactor) -> int:
    from etlsync.codegen import cli

    return cli.run(args)


COMMANDS = (Command("codegen", "generate typed code (python, java, go, node) from SQL queries",
                    _arguments, _run, order=40),)
