"""``etlsync codegen --job``: a SELECT becomes an etlsync job file (a PostgreSQL ``query``
source). A predicate ``cursor > :param`` (or ``>=``) makes the job incremental on that column:
the predicate is removed, since the source pushes ``cursor >= watermark`` down itself."""

from __future__ import annotations

from typing import Any

import yaml
from sqlglot import exp

from etlsync.codegen.model import CodegenError
from etlsync.codegen.parse import SENTINEL, parse_canonical, parse_file


def job_from_file(path: str, *, dialect: str = "postgres", sink: str = "sqlite",
                  table: str | None = None, write_mode: str | None = None, key: str | None = None,
                  cursor: str | None = None, text: str | None = None) -> str:
    """The YAML of a job reading the file's first SELECT query.

    :raises CodegenError: no SELECT, a MySQL file (the MySQL source reads tables, not
        queries), parameters other than the cursor's.
    """
    qf = parse_file(path, dialect, text)
    if dialect != "postgres":
        raise CodegenError(f"{path}: --job: only PostgreSQL queries (the MySQL source reads "
                           "tables, not queries)")
    q = next((q for q in qf.queries if q.kind in ("one", "many")), None)
    if q is None:
        raise CodegenError(f"{path}: --job: no :one or :many SELECT query")
    tree = parse_canonical(q, dialect)
    if not isinstance(tree, exp.Select):
        raise q.error("--job: needs a plain SELECT")
    found = _cursor_predicate(tree)
    if found is not None:
        pred, column = found
        if cursor is not None and cursor != column:
            raise q.error(f"--cursor {cursor}: the WHERE clause filters on {column!r}")
        cursor = column
        _remove(tree, pred)
    left = [p for p in tree.find_all(exp.Placeholder) if str(p.this).startswith(SENTINEL)]
    if left:
        raise q.error("--job: a job's query takes no parameters (only 'cursor > :param', which "
                      "makes it incremental)")
    keys = [k for k in (key or "").split(",") if k]
    sync: dict[str, Any] = {"sync_mode": "incremental" if cursor else "full_refresh"}
    if cursor:
        sync["cursor_field"] = cursor
    if keys:
        sync["primary_key"] = keys[0] if len(keys) == 1 else keys
    mode = write_mode or ("upsert" if keys else "append")
    if mode == "upsert" and not keys:
        raise CodegenError("--job-mode upsert needs --key")
    sink_opts: dict[str, Any] = {"type": sink, "table": table or q.name.lower()}
    if sink == "sqlite":
        sink_opts["path"] = f"{q.name.lower()}.db"
    job = {"name": q.name.lower(),
           "source": {"type": "postgres", "dsn": "${PG_DSN}", "query": tree.sql(dialect="postgres"),
                      "stream": q.name.lower()},
           "sync": sync, "sink": sink_opts, "write": {"write_mode": mode}}
    return (f"# written by `etlsync codegen --job` from {path} (query {q.name})\n"
            + yaml.safe_dump(job, sort_keys=False, default_flow_style=False))


def _cursor_predicate(tree: exp.Select) -> tuple[exp.Expr, str] | None:
    where = tree.args.get("where")
    if where is None:
        return None
    for node in where.find_all(exp.GT, exp.GTE):
        if isinstance(node.this, exp.Column) and isinstance(node.expression, exp.Placeholder):
            return node, node.this.name
    return None


def _remove(tree: exp.Select, pred: exp.Expr) -> None:
    parent = pred.parent
    if isinstance(parent, exp.Where):
        tree.set("where", None)
    elif isinstance(parent, exp.And):
        other = parent.expression if parent.this is pred else parent.this
        parent.replace(other)
    else:
        raise CodegenError("--job: the cursor predicate must be joined to the rest with AND")
