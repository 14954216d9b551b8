"""``etlsync init``: write a new job file from a few questions (or flags, ``-y``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from etlsync.cli._base import EXIT_OK, Command
from etlsync.core.errors import ConfigError
from etlsync.jobs import registry
from etlsync.jobs.build import build_job
from etlsync.jobs.env import Redactor
from etlsync.jobs.spec import load_job


def _arguments(init: argparse.ArgumentParser) -> None:
    init.add_argument("path", nargs="?", default="job.yaml", help="file to write (job.yaml)")
    init.add_argument("--name", help="pipeline name")
    init.add_argument("--source", help="source type (csv, jsonl, sqlite, postgres, ...)")
    init.add_argument("--source-path", help="the source's path option")
    init.add_argument("--source-opt", action="append", default=[], metavar="KEY=VALUE",
                      help="another source option (repeatable)")
    init.add_argument("--sink", help="sink type (sqlite, csv, postgres, ...)")
    init.add_argument("--sink-path", help="the sink's path option")
    init.add_argument("--table", help="the sink's table option")
    init.add_argument("--sink-opt", action="append", default=[], metavar="KEY=VALUE",
                      help="another sink option (repeatable)")
    init.add_argument("--sync-mode", choices=["full_refresh", "incremental", "cdc"])
    init.add_argument("--cursor-field")
    init.add_argument("--primary-key", help="key column(s), comma separated")
    init.add_argument("--write-mode", choices=["append", "overwrite", "upsert"])
    init.add_argument("-y", "--yes", action="store_true",
                      help="ask nothing: use the flags and defaults")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")


def _ask(question: str, default: str | None, interactive: bool,
         check: Callable[[str], str | None] | None = None) -> str:
    """Ask on stdout, read a line from stdin; empty input takes the default."""
    if not interactive:
        if default is None:
            raise ConfigError(f"init: {question.lower()}: no value (give it as a flag)")
        return default
    while True:
        shown = f" [{default}]" if default else ""
        print(f"{question}{shown}: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input: take the default or give up
            if default is None:
                raise ConfigError(f"init: {question.lower()}: no answer (end of input)")
            print()
            return default
        answer = line.strip() or (default or "")
        problem = check(answer) if check is not None else None
        if answer and problem is None:
            return answer
        print(f"  {problem or 'an answer is required'}")


def _choice(options: Sequence[str]) -> Callable[[str], str | None]:
    def check(answer: str) -> str | None:
        return None if answer in options or ":" in answer else \
            f"expected one of: {', '.join(options)}"
    return check


def _kv(items: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"init: {flag} {item!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value) if value else ""
    return out


_JOB_WIDE = {"sync_mode", "cursor_field", "primary_key", "write_mode", "conflict",
             "schema_policy", "batch_size"}


def _takes(kind: str, type_name: str, option: str) -> bool:
    try:
        return option in registry.resolve(kind, type_name, f"init: {kind}").options.__struct_fields__
    except ConfigError:
        return False


def _stage(kind: str, type_name: str, given: dict[str, Any], interactive: bool) -> dict[str, Any]:
    """The stage's mapping: its manifest's required options are asked for (with their
    descriptions); job-wide settings are asked separately."""
    stage: dict[str, Any] = {"type": type_name}
    declared = registry.resolve(kind, type_name, f"init: {kind}.type")
    for f in declared.fields():
        if f.required and f.name not in given and f.name not in _JOB_WIDE:
            secret = f.name in declared.options.secrets or f.name == "connection"
            hint = " (use ${VAR} for secrets)" if secret else ""
            about = f" - {f.description}" if f.description else ""
            given[f.name] = _ask(f"{kind} {f.name}{about}{hint}", None, interactive)
    stage.update(given)
    return stage


def _init(args: argparse.Namespace, redact: Redactor) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        raise ConfigError(f"{path}: exists already (use --force to overwrite)")
    interactive = not args.yes
    job: dict[str, Any] = {"name": args.name or _ask("pipeline name", path.stem, interactive)}
    sources = registry.names("source")
    src_type = args.source or _ask("source type", "csv", interactive, _choice(sources))
    src_opts = _kv(args.source_opt, "--source-opt")
    if args.source_path:
        src_opts["path"] = args.source_path
    job["source"] = _stage("source", src_type, src_opts, interactive)
    sync_mode = args.sync_mode or _ask("sync mode (full_refresh, incremental, cdc)",
                                       "full_refresh", interactive,
                                       _choice(["full_refresh", "incremental", "cdc"]))
    sync: dict[str, Any] = {"sync_mode": sync_mode}
    if sync_mode == "incremental":
        sync["cursor_field"] = args.cursor_field or _ask("cursor field (a column that only "
                                                         "grows)", "updated_at", interactive)
    pk = args.primary_key if args.primary_key is not None else \
        _ask("primary key column(s), comma separated (empty: none)", "-", interactive)
    if pk and pk != "-":
        keys = [k.strip() for k in pk.split(",") if k.strip()]
        sync["primary_key"] = keys[0] if len(keys) == 1 else keys
    job["sync"] = sync
    sinks = registry.names("sink")
    sink_type = args.sink or _ask("sink type", "sqlite", interactive, _choice(sinks))
    sink_opts = _kv(args.sink_opt, "--sink-opt")
    if args.sink_path:
        sink_opts["path"] = args.sink_path
    if args.table:
        sink_opts["table"] = args.table
    job["sink"] = _stage("sink", sink_type, sink_opts, interactive)
    default_mode = "upsert" if "primary_key" in sync and _takes("sink", sink_type,
                                                                "primary_key") else "append"
    job["write"] = {"write_mode": args.write_mode or _ask(
        "write mode (append, overwrite, upsert)", default_mode, interactive,
        _choice(["append", "overwrite", "upsert"]))}
    text = "# written by `etlsync init`; see docs/concepts/jobs.md\n" + \
        yaml.safe_dump(job, sort_keys=False, default_flow_style=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    build_job(load_job(path))  # a job the wizard wrote must validate
    print(f"check it with: etlsync run {path} --dry-run")
    return EXIT_OK


COMMANDS = (Command("init", "write a new job file from a few questions", _arguments, _init,
                    order=20),)
