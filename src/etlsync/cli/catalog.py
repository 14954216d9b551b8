"""``etlsync schema`` and ``etlsync list``: what the connector manifests declare."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from etlsync.catalog import CATALOG
from etlsync.cli._base import EXIT_OK, Command
from etlsync.jobs.env import Redactor
from etlsync.manifest import Kind


def _schema_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write it to this file instead")


def _schema(args: argparse.Namespace, redact: Redactor) -> int:
    from etlsync.jobs.schema import job_schema

    text = json.dumps(job_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return EXIT_OK


def _list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", choices=[k.value for k in Kind], help="only this kind")
    p.add_argument("--json", action="store_true", help="print JSON")


def _list(args: argparse.Namespace, redact: Redactor) -> int:
    kinds = [Kind(args.kind)] if args.kind else list(Kind)
    rows = [{"kind": k.value, "type": s.name, "family": s.family, "extra": s.extra,
             "capabilities": sorted(c.value for c in s.capabilities), "summary": s.summary}
            for k in kinds for s in CATALOG.types(k)]
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    for r in rows:
        extra = f"  [etlsync[{r['extra']}]]" if r["extra"] else ""
        caps = f"  ({', '.join(r['capabilities'])})" if r["capabilities"] else ""
        print(f"{r['kind']:<12} {r['type']:<14} {r['summary']}{caps}{extra}")
    return EXIT_OK


COMMANDS = (
    Command("list", "list the stage types, their extras and capabilities", _list_arguments,
            _list, order=30),
    Command("schema", "print the JSON Schema of job files (for editors)", _schema_arguments,
            _schema, order=31),
)
