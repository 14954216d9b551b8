"""Types offline and the analysis shared with the live path: a schema of tables (from a file
of CREATE TABLE statements, or from a server's catalog), result types through sqlglot's
``qualify`` + ``annotate_types``, nullability through the query's scopes (outer joins,
aggregates, CTEs), and parameter types from where each parameter is used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

from etlsync.codegen import sqltypes
from etlsync.codegen.model import UNKNOWN, CodegenError, Query, ResultColumn, SqlType
from etlsync.codegen.parse import SENTINEL


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    sql: str  # the type as declared (numeric(10,2), longtext)
    type: SqlType
    nullable: bool


Schema = dict[str, dict[str, ColumnInfo]]
"""Lower-case table name -> column name -> what is known of it, in column order."""

E = TypeVar("E", bound=exp.Expr)


def load_schema_file(path: str | Path, dialect: str) -> Schema:
    """Tables from a file of CREATE TABLE statements.

    :raises CodegenError: unreadable file or a syntax error (file, line, column).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CodegenError(f"{path}: cannot read the schema file: {exc.strerror or exc}") from None
    try:
        statements = sqlglot.parse(text, read=dialect, error_message_context=len(text) + 1)
    except sqlglot.ParseError as exc:
        info = exc.errors[0] if exc.errors else {}
        before = text[:len(info.get("start_context", ""))]
        line, col = before.count("\n") + 1, len(before) - before.rfind("\n")
        raise CodegenError(f"{path}:{line}:{col}: schema file: syntax error: "
                           f"{info.get('description', exc)}") from None
    schema: Schema = {}
    for st in statements:
        if not isinstance(st, exp.Create) or st.kind != "TABLE":
            continue
        like = st.find(exp.LikeProperty)
        if like is not None and isinstance(like.this, exp.Table) and isinstance(st.this, exp.Expr):
            # CREATE TABLE t (LIKE other ...) / CREATE TABLE t LIKE other: other's columns
            target = st.this.this if isinstance(st.this, exp.Schema) else st.this
            if like.this.name.lower() in schema and isinstance(target, exp.Table):
                schema[target.name.lower()] = dict(schema[like.this.name.lower()])
            continue
        if not isinstance(st.this, exp.Schema):
            continue
        table = st.this.this
        keys = _table_keys(st.this)
        json_checks = _json_checks(st.this)
        columns: dict[str, ColumnInfo] = {}
        for cdef in st.this.expressions:
            if not isinstance(cdef, exp.ColumnDef) or cdef.args.get("kind") is None:
                continue
            kinds = {type(c.args.get("kind")) for c in cdef.constraints}
            not_null = bool(kinds & {exp.NotNullColumnConstraint, exp.PrimaryKeyColumnConstraint}) \
                and not any(isinstance(c.args.get("kind"), exp.NotNullColumnConstraint)
                            and c.args["kind"].args.get("allow_null") for c in cdef.constraints)
            declared = cdef.args["kind"].sql(dialect=dialect)
            typ = sqltypes.from_name(declared)
            if cdef.name in json_checks:
                typ = SqlType("json", declared)
            columns[cdef.name] = ColumnInfo(declared, typ, not (not_null or cdef.name in keys))
        schema[table.name.lower()] = columns
    return schema


def _table_keys(node: exp.Schema) -> set[str]:
    keys: set[str] = set()
    for item in node.expressions:
        if isinstance(item, exp.PrimaryKey):
            keys |= {e.name for e in item.expressions}
    return keys


def _json_checks(node: exp.Schema) -> set[str]:
    """Columns a ``CHECK (json_valid(col))`` marks as JSON (how MariaDB spells JSON)."""
    out: set[str] = set()
    for item in node.find_all(exp.Anonymous):
        if item.name.lower() == "json_valid" and item.expressions:
            col = item.expressions[0]
            if isinstance(col, exp.Column):
                out.add(col.name)
    return out


def sqlglot_schema(schema: Schema) -> dict[str, object]:
    """The schema as sqlglot's optimizer takes it: table -> column -> declared type."""
    return {t: {c: info.sql for c, info in cols.items()} for t, cols in schema.items()}


def referenced_tables(tree: exp.Expr) -> set[str]:
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    return {t.name.lower() for t in tree.find_all(exp.Table) if t.name.lower() not in ctes}


def annotated(q: Query, tree: E, schema: Schema, dialect: str) -> E:
    """The tree qualified and type-annotated against ``schema``.

    :raises CodegenError: a table the schema does not have, an unknown or ambiguous column.
    """
    missing = sorted(referenced_tables(tree) - set(schema))
    if missing:
        raise q.error(f"table {missing[0]!r} is not in the schema")
    try:
        qualified = qualify(tree.copy(), schema=sqlglot_schema(schema), dialect=dialect,
                            quote_identifiers=False, validate_qualify_columns=True)
        return annotate_types(qualified, schema=sqlglot_schema(schema), dialect=dialect)
    except OptimizeError as exc:
        raise q.error(f"{exc}") from None
    except SqlglotError as exc:
        raise q.error(f"cannot type the query: {exc}") from None


# -- result columns ------------------------------------------------------------------------
def result_columns(q: Query, tree: exp.Expr, schema: Schema, dialect: str) -> list[ResultColumn]:
    """Names, types and nullability of what the statement returns (empty for plain DML)."""
    if isinstance(tree, exp.Query):
        typed = annotated(q, tree, schema, dialect)
        scope = build_scope(typed)
        out = []
        for i, proj in enumerate(typed.selects):
            name = output_name(tree.selects[i] if i < len(tree.selects) else proj, i)
            typ = sqltypes.from_datatype(proj.type, dialect)
            out.append(ResultColumn(name, typ, True if scope is None else nullable(proj, scope, schema)))
        return out
    returning = tree.args.get("returning")
    if returning is None:
        return []
    table = dml_table(tree)
    cols = schema.get(table, {})
    out = []
    for i, e in enumerate(returning.expressions):
        if isinstance(e, exp.Star):
            out += [ResultColumn(c, info.type, info.nullable) for c, info in cols.items()]
            continue
        inner = e.this if isinstance(e, exp.Alias) else e
        info = cols.get(inner.name) if isinstance(inner, exp.Column) else None
        out.append(ResultColumn(output_name(e, i), info.type if info else UNKNOWN,
                                info.nullable if info else True))
    return out


def output_name(e: exp.Expr, i: int) -> str:
    """The column name the server would report: alias, column name, or function name."""
    if isinstance(e, exp.Alias | exp.Column) and e.alias_or_name:
        return e.alias_or_name
    if isinstance(e, exp.Func):
        return e.sql_name().lower() if not isinstance(e, exp.Anonymous) else e.name.lower()
    return f"column_{i + 1}"


def dml_table(tree: exp.Expr) -> str:
    target = tree.this
    if isinstance(target, exp.Schema):
        target = target.this
    return target.name.lower() if isinstance(target, exp.Table) else ""


_NEVER_NULL = (exp.Count, exp.RowNumber, exp.Rank, exp.DenseRank, exp.CurrentTimestamp,
               exp.CurrentDate, exp.Exists, exp.Is, exp.Literal, exp.Boolean)
_AGGREGATES = (exp.Sum, exp.Avg, exp.Min, exp.Max)


def nullable(e: exp.Expr, scope: Scope, schema: Schema) -> bool:
    """Whether ``e`` (a projection of ``scope``) may be NULL; ``True`` unless proven not."""
    if isinstance(e, exp.Alias | exp.Paren | exp.Cast):
        return nullable(e.this, scope, schema)
    if isinstance(e, exp.Null):
        return True
    if isinstance(e, exp.Literal | exp.Boolean):
        return False
    if isinstance(e, exp.Column):
        return _column_nullable(e, scope, schema)
    if isinstance(e, exp.Window):
        return not isinstance(e.this, _NEVER_NULL)
    if isinstance(e, _NEVER_NULL):
        return False
    if isinstance(e, exp.Coalesce):
        return all(nullable(a, scope, schema) for a in [e.this, *e.expressions])
    if isinstance(e, _AGGREGATES):
        grouped = scope.expression.args.get("group") is not None
        return not grouped or nullable(e.this, scope, schema)
    if isinstance(e, exp.Placeholder | exp.Subquery | exp.Case | exp.If | exp.Anonymous | exp.Div):
        return True
    if isinstance(e, exp.Binary | exp.Func | exp.Unary):
        children = [c for c in e.iter_expressions() if not isinstance(c, exp.DataType)]
        return any(nullable(c, scope, schema) for c in children)
    return True


def _column_nullable(col: exp.Column, scope: Scope, schema: Schema) -> bool:
    source = scope.sources.get(col.table)
    if col.table in _outer_side(scope):
        return True
    if isinstance(source, exp.Table):
        info = schema.get(source.name.lower(), {}).get(col.name)
        return info is None or info.nullable
    if isinstance(source, Scope):
        select = source.expression
        if not isinstance(select, exp.Query) or isinstance(select, exp.SetOperation):
            return True
        for proj in select.selects:
            if proj.alias_or_name == col.name:
                return nullable(proj, source, schema)
    return True


def _outer_side(scope: Scope) -> set[str]:
    """Aliases of the sources an outer join can fill with NULLs."""
    select = scope.expression
    if not isinstance(select, exp.Select):
        return set()
    seen: list[str] = []
    frm = select.args.get("from_") or select.args.get("from")
    if frm is not None:
        seen.append(frm.this.alias_or_name)
    out: set[str] = set()
    for join in select.args.get("joins") or []:
        name = join.this.alias_or_name
        side = (join.side or "").upper()
        if side in ("LEFT", "FULL"):
            out.add(name)
        if side in ("RIGHT", "FULL"):
            out |= set(seen)
        seen.append(name)
    return out


# -- parameters ----------------------------------------------------------------------------
def param_types(q: Query, tree: exp.Expr, schema: Schema, dialect: str) -> dict[int, SqlType]:
    """The type of each parameter from where it is used: compared with or assigned to a
    column, cast, in LIMIT/OFFSET, or a value of an INSERT. Unknown ones are left out."""
    try:
        typed = annotated(q, tree, schema, dialect) if isinstance(tree, exp.Query) else \
            annotate_types(tree.copy(), schema=sqlglot_schema(schema), dialect=dialect)
    except CodegenError:
        typed = tree.copy()
    target = schema.get(dml_table(tree), {}) if not isinstance(tree, exp.Query) else {}
    out: dict[int, SqlType] = {}
    for ph in typed.find_all(exp.Placeholder):
        name = str(ph.this or "")
        if not name.startswith(SENTINEL):
            continue
        typ = _context_type(ph, target, dialect, schema)
        if typ is not None and typ.logical != "unknown":
            out.setdefault(int(name[len(SENTINEL):]), typ)
    return out


def _context_type(ph: exp.Expr, target: dict[str, ColumnInfo], dialect: str,
                  schema: Schema) -> SqlType | None:
    node, parent = ph, ph.parent
    while isinstance(parent, exp.Paren):
        node, parent = parent, parent.parent
    if isinstance(parent, exp.Cast):
        return sqltypes.from_name(parent.to.sql(dialect=dialect))
    if isinstance(parent, exp.Limit | exp.Offset | exp.Fetch) or node.arg_key in ("limit", "offset"):
        return SqlType("int64", "bigint")
    if isinstance(parent, exp.Like | exp.ILike):
        return SqlType("text", "text")
    if isinstance(parent, exp.Binary):
        other = parent.expression if node is parent.this else parent.this
        return _typed(other, target, dialect, schema)
    if isinstance(parent, exp.Between | exp.In):
        return _typed(parent.this, target, dialect, schema)
    if isinstance(parent, exp.Coalesce):
        for arg in [parent.this, *parent.expressions]:
            if arg is not node:
                return _typed(arg, target, dialect, schema)
    if isinstance(parent, exp.Tuple) and isinstance(parent.parent, exp.Values):
        insert = parent.parent.parent
        if isinstance(insert, exp.Insert):
            names = [c.name for c in insert.this.expressions] if isinstance(insert.this, exp.Schema) \
                else list(target)
            pos = parent.expressions.index(node)
            if pos < len(names) and names[pos] in target:
                return target[names[pos]].type
    return None


def _typed(e: exp.Expr, target: dict[str, ColumnInfo], dialect: str,
           schema: Schema) -> SqlType | None:
    if isinstance(e, exp.Column):
        table = schema.get(e.table.lower()) if e.table else None
        info = (table or target).get(e.name)
        if info is None and not e.table:
            hits = [cols[e.name] for cols in schema.values() if e.name in cols]
            info = hits[0] if len({h.type for h in hits}) == 1 else None
        if info is not None:
            return info.type
    typ = sqltypes.from_datatype(e.type, dialect) if e.type is not None else None
    return typ if typ is not None and typ.logical != "unknown" else None


def param_name_hint(tree: exp.Expr, index: int) -> str | None:
    """A name for an unnamed parameter from where it is first used (the column it is
    compared with or assigned to, ``limit``, ``offset``)."""
    for ph in tree.find_all(exp.Placeholder):
        if str(ph.this or "") != f"{SENTINEL}{index}":
            continue
        node: exp.Expr = ph
        parent = ph.parent
        while isinstance(parent, exp.Paren | exp.Cast):
            node, parent = parent, parent.parent
        if isinstance(parent, exp.Limit | exp.Fetch) or node.arg_key == "limit":
            return "limit"
        if isinstance(parent, exp.Offset) or node.arg_key == "offset":
            return "offset"
        if isinstance(parent, exp.Binary | exp.Between | exp.In):
            other = parent.this if node is not parent.this else parent.expression
            if isinstance(other, exp.Column):
                return other.name
        if isinstance(parent, exp.Tuple) and isinstance(parent.parent, exp.Values):
            insert = parent.parent.parent
            if isinstance(insert, exp.Insert) and isinstance(insert.this, exp.Schema):
                pos = parent.expressions.index(node)
                cols = insert.this.expressions
                column = cols[pos] if pos < len(cols) else None
                if isinstance(column, exp.Expr):
                    return column.name
    return None
