"""The ``etlsync`` command: run, validate and create job files.

Exit codes: 0 success (also a graceful stop by SIGTERM or Ctrl-C: drained and committed), 1
the run failed (one line naming the stage), 2 the job or the arguments are invalid (one line
naming the file and key), 130 interrupted without a graceful stop (a second signal).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys
import traceback
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog
import yaml

from etlsync import __version__
from etlsync.codegen import cli as codegen_cli
from etlsync.core.errors import ConfigError, EtlsyncError, StageError
from etlsync.jobs import registry
from etlsync.jobs.build import build_job
from etlsync.jobs.env import Redactor
from etlsync.jobs.runner import dry_run, format_dry_run, run_built
from etlsync.jobs.spec import load_job

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="etlsync", description="Run real-time ETL and CDC pipelines described by job files.")
    p.add_argument("--version", action="version", version=f"etlsync {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log more (-v: info, -vv: debug); logs go to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a job file")
    run.add_argument("job", help="the job file (YAML)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan, the schemas and the first rows; write nothing")
    run.add_argument("--limit", type=int, default=None, metavar="N",
                     help="rows to show with --dry-run (default 10)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--json", action="store_true", help="print the result as one JSON object")

    val = sub.add_parser("validate", help="check a job file without running it")
    val.add_argument("job", help="the job file (YAML)")
    val.add_argument("--json", action="store_true", help="print the plan as JSON")

    init = sub.add_parser("init", help="write a new job file from a few questions")
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
    codegen_cli.add_parser(sub)
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
    args = _parser().parse_args(argv)
    redact = Redactor()
    was_configured, old = structlog.is_configured(), structlog.get_config()
    _configure_logging(args.verbose, redact)
    try:
        if args.command == "init":
            return _init(args)
        if args.command == "codegen":
            return codegen_cli.run(args)
        return asyncio.run(_run(args, redact))
    except ConfigError as exc:
        _err(redact(f"error: {exc}"))
        return EXIT_CONFIG
    except StageError as exc:
        _err(redact(f"error: stage {exc.stage!r} failed: {type(exc.cause).__name__}: "
                    f"{exc.cause}"))
        if args.verbose:
            _err(redact("".join(traceback.format_exception(exc.cause))))
        return EXIT_FAILED
    except EtlsyncError as exc:
        _err(redact(f"error: {type(exc).__name__}: {exc}"))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line, traceback only when asked for
        _err(redact(f"error: unexpected {type(exc).__name__}: {exc}"))
        if args.verbose:
            _err(redact("".join(traceback.format_exception(exc))))
        return EXIT_FAILED
    finally:
        if was_configured:
            structlog.configure(**old)
        else:
            structlog.reset_defaults()


def _err(text: str) -> None:
    print(text, file=sys.stderr)


async def _run(args: argparse.Namespace, redact: Redactor) -> int:
    job = load_job(args.job)
    redact.secrets |= job.redact.secrets
    built = build_job(job)
    if args.command == "validate":
        if args.json:
            import msgspec

            print(redact(msgspec.json.encode(built.plan(), enc_hook=str).decode()))
        else:
            kinds = [f"{s.type}" for s in built.stages if s.kind != "checkpoint"]
            print(redact(f"ok: {job.path} (pipeline {job.name!r}): {' -> '.join(kinds)}"))
        return EXIT_OK
    if args.limit is not None and not args.dry_run:
        raise ConfigError("--limit: only applies to --dry-run (the rows it shows)")
    if args.dry_run:
        limit = 10 if args.limit is None else args.limit
        if limit < 0:
            raise ConfigError("--limit: expected a number >= 0")
        dr = await dry_run(built, limit)
        print(redact(dr.to_json() if args.json else format_dry_run(dr)))
        return EXIT_OK
    result = await run_built(built, progress=not args.no_progress and not args.json)
    print(redact(result.to_json() if args.json else str(result)))
    status = result.summary.status
    # a graceful stop (SIGTERM, Ctrl-C: drained, checkpoint committed) is a success
    return EXIT_FAILED if status == "failed" else EXIT_OK


# -- init -------------------------------------------------------------------------------------
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


_SKIP = {"self", "sync_mode", "cursor_field", "primary_key", "write_mode", "conflict",
         "schema_policy", "batch_size", "stream", "name"}


def _required_options(kind: str, type_name: str) -> list[str]:
    try:
        factory = registry.resolve(kind, type_name, f"init: {kind}")
        params = inspect.signature(factory).parameters.values()
    except (ConfigError, TypeError, ValueError):
        return ["path"]
    return [p.name for p in params if p.default is p.empty and p.name not in _SKIP
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _takes(kind: str, type_name: str, option: str) -> bool:
    try:
        return registry.accepts(registry.resolve(kind, type_name, f"init: {kind}"), option)
    except ConfigError:
        return False


def _stage(kind: str, type_name: str, given: dict[str, Any], interactive: bool) -> dict[str, Any]:
    stage: dict[str, Any] = {"type": type_name}
    for opt in _required_options(kind, type_name):
        if opt not in given:
            hint = " (use ${VAR} for secrets)" if opt in ("dsn", "url", "uri", "password") else ""
            given[opt] = _ask(f"{kind} {opt}{hint}", None, interactive)
    stage.update(given)
    return stage


def _init(args: argparse.Namespace) -> int:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
