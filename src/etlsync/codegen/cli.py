"""``etlsync codegen FILE.sql --lang python|java|go|node``: typed code from named queries."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from etlsync.codegen.model import CodegenError

LANGS = ("python", "java", "go", "node")
URL_ENV = "ETLSYNC_CODEGEN_DATABASE_URL"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``codegen`` command to the ``etlsync`` parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "codegen", help="generate typed code (python, java, go, node) from SQL queries",
        description="Generate typed functions from a file of named queries "
                    "('-- name: NAME :one|:many|:exec|:execrows|:transfer'), or an etlsync job "
                    "file from a SELECT (--job).")
    p.add_argument("file", help="the query file (.sql)")
    p.add_argument("--lang", choices=LANGS, help="language to generate")
    p.add_argument("--out", "-o", metavar="DIR", help="directory to write into (default: print)")
    p.add_argument("--dialect", choices=("postgres", "mysql"), default="postgres",
                   help="dialect the file is written in (default postgres)")
    p.add_argument("--target", choices=("postgres", "mysql"),
                   help="dialect of the database the code runs on (default: --dialect)")
    p.add_argument("--sink-dialect", choices=("postgres", "mysql"),
                   help="transfers: dialect of the database they write to (default: --target)")
    p.add_argument("--schema", metavar="FILE", help="types offline from CREATE TABLE statements")
    p.add_argument("--database-url", metavar="URL",
                   help=f"types from a live server (default: ${URL_ENV}); the URL is never printed")
    p.add_argument("--package", default="", help="Go package / Java package of the code")
    p.add_argument("--main", action="store_true",
                   help="also write a runner: stdin lines 'QUERY<TAB>ARG...', JSON results")
    p.add_argument("--no-format", action="store_true", help="do not run the language's formatter")
    p.add_argument("--node-driver", choices=("plain", "knex"), default="plain",
                   help="node: plain drivers (pg / mysql2, the default) or knex.raw")
    p.add_argument("--python-dataframes", action="store_true",
                   help="python: also a <query>_df function per :many query returning a pandas "
                        "DataFrame")
    p.add_argument("--job", action="store_true",
                   help="write an etlsync job file for the first SELECT (needs --sink-url-env)")
    p.add_argument("--job-sink", default="sqlite", help="--job: sink type (default sqlite)")
    p.add_argument("--job-table", help="--job: the sink's table (default: the query name)")
    p.add_argument("--job-mode", choices=("append", "upsert", "overwrite"),
                   help="--job: write mode (default: upsert with a key, else append)")
    p.add_argument("--key", help="--job: primary key column(s), comma separated")
    p.add_argument("--cursor", help="--job: cursor column (default: found in the WHERE clause)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code (2 for bad input, with one line on stderr)."""
    try:
        return asyncio.run(_run(args))
    except CodegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace) -> int:
    from etlsync.codegen import generate_files

    if args.job:
        from etlsync.codegen.jobfile import job_from_file

        text = job_from_file(args.file, dialect=args.dialect, sink=args.job_sink,
                             table=args.job_table, write_mode=args.job_mode, key=args.key,
                             cursor=args.cursor)
        return _emit({"job.yaml": text}, args.out)
    if args.lang is None:
        raise CodegenError("codegen: --lang is required (python, java, go or node)")
    url = args.database_url or (os.environ.get(URL_ENV) if args.schema is None else None)
    files = await generate_files(args.file, args.lang, dialect=args.dialect, target=args.target,
                                 sink_dialect=args.sink_dialect, schema_file=args.schema,
                                 database_url=url, package=args.package, main=args.main,
                                 format_code=not args.no_format, node_driver=args.node_driver,
                                 dataframes=args.python_dataframes)
    return _emit(files, args.out)


def _emit(files: dict[str, str], out: str | None) -> int:
    if out is None:
        for name, text in files.items():
            if len(files) > 1:
                print(f"// ==> {name} <==")
            print(text, end="" if text.endswith("\n") else "\n")
        return 0
    write_files(files, Path(out))
    for name in files:
        print(f"wrote {Path(out) / name}")
    return 0


def write_files(files: dict[str, str], out: Path) -> None:
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
