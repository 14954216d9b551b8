"""Give every query of a file its parameter and result types: offline from a schema file, or
live from a server that prepares each statement. Also names unnamed parameters."""

from __future__ import annotations

from pathlib import Path

from sqlglot import exp
from sqlglot.optimizer.scope import build_scope

from etlsync.codegen import infer
from etlsync.codegen.dialect import placeholder_style, render, target_sql, transpile_tree
from etlsync.codegen.live import LiveDatabase, dialect_of_url
from etlsync.codegen.model import UNKNOWN, CodegenError, Query, QueryFile, ResultColumn
from etlsync.codegen.parse import parse_canonical


def statement_of(q: Query, tree: exp.Expr) -> exp.Expr:
    """What is typed: the SELECT of a ``:transfer``, else the statement itself."""
    if q.kind == "transfer" and isinstance(tree, exp.Insert) and isinstance(tree.expression, exp.Query):
        return tree.expression
    return tree


async def analyze(qf: QueryFile, target: str, *, schema_file: str | Path | None = None,
                  database_url: str | None = None) -> dict[str, str]:
    """Type every query for ``target``; returns each query's SQL in the target dialect
    (parameters as ``:etlp_<i>``).

    :raises CodegenError: no type source, untranslatable SQL, a server's rejection.
    """
    if (schema_file is None) == (database_url is None):
        raise CodegenError("types: give a schema file (--schema) or a database URL "
                           "(--database-url / ETLSYNC_CODEGEN_DATABASE_URL), exactly one")
    texts: dict[str, str] = {}
    trees: dict[str, exp.Expr] = {}
    for q in qf.queries:
        text = target_sql(q, qf.dialect, target)
        tree = statement_of(q, parse_canonical(q, target, text))
        if q.kind == "transfer":
            text = transpile_tree(q, tree, target)
        texts[q.name], trees[q.name] = text, tree
    if schema_file is not None:
        schema = infer.load_schema_file(schema_file, target)
        for q in qf.queries:
            _offline(q, trees[q.name], schema, target)
    else:
        assert database_url is not None
        if dialect_of_url(database_url) != target:
            raise CodegenError(f"database URL is a {dialect_of_url(database_url)} server but the "
                               f"code is generated for {target} (--target)")
        async with LiveDatabase(database_url) as db:
            for q in qf.queries:
                await _live(q, texts[q.name], trees[q.name], db, target)
    for q in qf.queries:
        _finish(q, trees[q.name])
    return texts


def _offline(q: Query, tree: exp.Expr, schema: infer.Schema, dialect: str) -> None:
    q.columns = infer.result_columns(q, tree, schema, dialect)
    for index, typ in infer.param_types(q, tree, schema, dialect).items():
        q.params[index].type = typ


async def _live(q: Query, text: str, tree: exp.Expr, db: LiveDatabase, dialect: str) -> None:
    rendered = render(q, text, placeholder_style(dialect))
    same = text == q.canonical
    prepared = await db.prepare(q, rendered.sql, infer.referenced_tables(tree),
                                rendered.input_offset if same else None)
    by_index: dict[int, bool] = {}
    if dialect == "postgres" and isinstance(tree, exp.Query):
        try:
            typed = infer.annotated(q, tree, prepared.schema, dialect)
            scope = build_scope(typed)
            if scope is not None and len(typed.selects) == len(prepared.columns):
                by_index = {i: infer.nullable(p, scope, prepared.schema)
                            for i, p in enumerate(typed.selects)}
        except CodegenError:
            by_index = {}
    elif dialect == "postgres":
        for i, col in enumerate(infer.result_columns(q, tree, prepared.schema, dialect)):
            by_index[i] = col.nullable
    q.columns = [ResultColumn(c.name, c.type, by_index.get(i, True) if c.nullable is None else c.nullable)
                 for i, c in enumerate(prepared.columns)]
    context = infer.param_types(q, tree, prepared.schema, dialect)
    for p in q.params:
        server = prepared.params[p.index] if p.index < len(prepared.params) else None
        p.type = server if server is not None and server.logical != "unknown" else \
            context.get(p.index, server or UNKNOWN)


def _finish(q: Query, tree: exp.Expr) -> None:
    """Name unnamed parameters from their use; mark those the annotation says may be NULL."""
    taken = {p.name for p in q.params if p.named}
    for p in q.params:
        if p.named:
            continue
        hint = infer.param_name_hint(tree, p.index) or p.name
        name, n = hint, 2
        while name in taken:
            name, n = f"{hint}_{n}", n + 1
        p.name = name
        taken.add(name)
    nullable = {n for n in q.options.get("nullable", "").split(",") if n}
    unknown = nullable - {p.name for p in q.params}
    if unknown:
        raise q.error(f"option nullable={','.join(sorted(unknown))}: no such parameter "
                      f"({', '.join(p.name for p in q.params) or 'none'})")
    for p in q.params:
        p.nullable = p.name in nullable
    if q.kind in ("one", "many") and not q.columns:
        raise q.error(f":{q.kind} returns no columns")
