"""Query files: sqlc-style annotations (``-- name: GetAuthor :one``), parameters (``:name``,
``$N``, or ``?`` in MySQL files) found with the SQL tokenizer, and syntax checks whose errors
name the query, line and column."""

from __future__ import annotations

import re
from pathlib import Path

import sqlglot
from sqlglot import exp

from etlsync.codegen.model import KINDS, CodegenError, Param, Query, QueryFile, TransferSpec

DIALECTS = ("postgres", "mysql")
SENTINEL = "etlp_"
_ANNOTATION = re.compile(r"^\s*--\s*name:\s*(?P<name>\S+)\s+:(?P<kind>\w+)(?P<opts>.*)$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sqlglot_dialect(dialect: str) -> str:
    if dialect not in DIALECTS:
        raise CodegenError(f"dialect {dialect!r}: expected one of {', '.join(DIALECTS)}")
    return dialect


def parse_file(path: str | Path, dialect: str = "postgres", text: str | None = None) -> QueryFile:
    """Read a query file; every query is checked for syntax and its parameters are found.

    :raises CodegenError: no query, a bad annotation, a duplicate name, a syntax error.
    """
    sqlglot_dialect(dialect)
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CodegenError(f"{name}: cannot read: {exc.strerror or exc}") from None
    queries: list[Query] = []
    lines = text.splitlines(keepends=True)
    current: tuple[str, str, dict[str, str], int] | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            queries.append(_make_query(name, dialect, current, body))

    for lineno, line in enumerate(lines, start=1):
        m = _ANNOTATION.match(line)
        if m:
            close()
            qname, kind = m["name"], m["kind"]
            if kind not in KINDS:
                raise CodegenError(f"{name}:{lineno}:1: query {qname!r}: unknown kind ':{kind}' "
                                   f"(expected one of {', '.join(':' + k for k in KINDS)})")
            if not _IDENT.match(qname):
                raise CodegenError(f"{name}:{lineno}:1: query name {qname!r}: letters, digits "
                                   "and _ only, not starting with a digit")
            current, body = (qname, kind, _options(m["opts"], name, lineno), lineno + 1), []
        elif current is not None:
            body.append(line)
        elif line.strip() and not line.strip().startswith("--"):
            raise CodegenError(f"{name}:{lineno}:1: SQL before the first '-- name: NAME :kind' "
                               "annotation")
    close()
    if not queries:
        raise CodegenError(f"{name}: no queries (annotate each with '-- name: NAME :one|:many|"
                           ":exec|:execrows|:transfer')")
    seen: dict[str, Query] = {}
    for q in queries:
        if q.name.lower() in seen:
            raise CodegenError(f"{q.where()}: query name {q.name!r} is used twice (first at "
                               f"{seen[q.name.lower()].where()})")
        seen[q.name.lower()] = q
    return QueryFile(name, dialect, queries)


def _options(text: str, file: str, lineno: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise CodegenError(f"{file}:{lineno}:1: annotation option {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _make_query(file: str, dialect: str, head: tuple[str, str, dict[str, str], int],
                body: list[str]) -> Query:
    name, kind, options, first_line = head
    raw = "".join(body)
    # the SQL starts at its first non-blank character; trailing blanks and ';' are dropped
    lead = len(raw) - len(raw.lstrip())
    line = first_line + raw[:lead].count("\n")
    col = lead - raw[:lead].rfind("\n")
    sql = raw.strip().rstrip(";").rstrip()
    q = Query(name=name, kind=kind, sql=sql, canonical=sql, line=line, col=col, file=file,
              options=options)
    if not sql:
        raise q.error("no SQL after the annotation")
    _find_params(q, dialect)
    tree = parse_canonical(q, dialect)
    _check_kind(q, tree)
    return q


def _find_params(q: Query, dialect: str) -> None:
    try:
        tokens = sqlglot.tokenize(q.sql, read=dialect)
    except sqlglot.errors.TokenError as exc:
        raise q.error(f"syntax error: {exc}") from None
    spans: list[tuple[int, int, str]] = []  # start, end (exclusive), key
    styles: set[str] = set()
    positional = 0
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        adjacent = nxt is not None and nxt.start == tok.end + 1
        prev = tokens[i - 1].token_type.name if i else ""
        if tok.token_type.name == "COLON" and adjacent and nxt is not None \
                and _IDENT.match(nxt.text) and prev != "L_BRACKET" and q.sql[nxt.start] != '"':
            spans.append((tok.start, nxt.end + 1, ":" + nxt.text))
            styles.add(":name")
        elif tok.token_type.name == "PARAMETER" and tok.text == "$" and adjacent \
                and nxt is not None and nxt.text.isdigit():
            spans.append((tok.start, nxt.end + 1, "$" + str(int(nxt.text))))
            styles.add("$N")
        elif tok.token_type.name == "PLACEHOLDER" and dialect == "mysql":
            positional += 1
            spans.append((tok.start, tok.end + 1, f"?{positional}"))
            styles.add("?")
    if len(styles) > 1:
        raise q.error(f"mixed parameter styles ({', '.join(sorted(styles))}): use one")
    params: dict[str, Param] = {}
    if "$N" in styles:  # $N numbers the parameters: the index is N - 1, no gaps allowed
        numbers = sorted({int(k[1:]) for _, _, k in spans})
        if numbers != list(range(1, len(numbers) + 1)):
            missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
            raise q.error(f"parameter ${missing[0]} is never used (numbered parameters have no gaps)")
        for n in numbers:
            params[f"${n}"] = Param(name=f"p{n}", index=n - 1)
    out, last, delta = [], 0, 0
    for start, end, key in spans:
        if key not in params:
            named = key.startswith(":")
            params[key] = Param(name=key[1:] if named else f"p{len(params) + 1}",
                                index=len(params), named=named)
        p = params[key]
        token = f":{SENTINEL}{p.index}"
        out.append(q.sql[last:start] + token)
        delta += len(token) - (end - start)
        q.offsets.append((sum(len(s) for s in out), delta))
        q.occurrences.append(p.index)
        last = end
    out.append(q.sql[last:])
    q.canonical = "".join(out)
    q.params = sorted(params.values(), key=lambda p: p.index)


def parse_canonical(q: Query, dialect: str, text: str | None = None) -> exp.Expr:
    """The query's syntax tree (parameters are ``Placeholder(etlp_<i>)``); ``text``: the
    query transpiled to ``dialect`` instead of its canonical text.

    :raises CodegenError: a syntax error, naming the line and column.
    """
    text = q.canonical if text is None else text
    try:
        trees = sqlglot.parse(text, read=dialect, error_message_context=len(text) + 1)
    except sqlglot.ParseError as exc:
        info = exc.errors[0] if exc.errors else {}
        offset = len(info.get("start_context", "")) if info else None
        what = info.get("description", str(exc)) if info else str(exc)
        near = info.get("highlight", "") if info else ""
        raise q.error(f"syntax error: {what}" + (f" (near {near!r})" if near else ""),
                      offset if text is q.canonical else None) from None
    except sqlglot.errors.TokenError as exc:
        raise q.error(f"syntax error: {exc}") from None
    statements = [t for t in trees if t is not None]
    if len(statements) != 1:
        raise q.error(f"expected one statement, found {len(statements)}")
    tree = statements[0]
    if isinstance(tree, exp.Command):
        raise q.error(f"syntax error: {tree.name!r} is not a statement this dialect parses")
    return tree


def _check_kind(q: Query, tree: exp.Expr) -> None:
    returns_rows = isinstance(tree, exp.Query) or tree.args.get("returning") is not None
    if q.kind in ("one", "many") and not returns_rows:
        raise q.error(f":{q.kind} needs a statement that returns rows (SELECT, or RETURNING)")
    if q.kind == "transfer":
        q.transfer = transfer_spec(q, tree)


def transfer_spec(q: Query, tree: exp.Expr) -> TransferSpec:
    """A ``:transfer`` is ``INSERT INTO target [(cols)] SELECT ...``; options ``mode``
    (append, upsert), ``key`` (comma separated) and ``batch`` (rows per transaction)."""
    if not isinstance(tree, exp.Insert) or not isinstance(tree.expression, exp.Query):
        raise q.error(":transfer needs INSERT INTO target [(columns)] SELECT ...")
    target = tree.this
    columns: list[str] = []
    if isinstance(target, exp.Schema):
        columns = [c.name for c in target.expressions]
        target = target.this
    if not isinstance(target, exp.Table):
        raise q.error(":transfer target must be a table")
    select = tree.expression
    names = [s.alias_or_name for s in select.selects]
    if not columns:
        if any(not n or n == "*" for n in names):
            raise q.error(":transfer: name every selected column (or list the target columns)")
        columns = names
    if len(columns) != len(names):
        raise q.error(f":transfer: {len(columns)} target columns but {len(names)} selected")
    mode = q.options.get("mode", "append")
    if mode not in ("append", "upsert"):
        raise q.error(f"option mode={mode}: expected append or upsert")
    key = [k for k in q.options.get("key", "").split(",") if k]
    if mode == "upsert" and not key:
        raise q.error("option mode=upsert needs key=COLUMN[,COLUMN]")
    if not key:
        raise q.error(":transfer needs key=COLUMN: batches are paged and resumed by it")
    for k in key:
        if k not in columns:
            raise q.error(f"option key={k}: not a target column ({', '.join(columns)})")
    try:
        batch = int(q.options.get("batch", "1000"))
    except ValueError:
        batch = 0
    if batch < 1:
        raise q.error(f"option batch={q.options.get('batch')}: expected a number >= 1")
    table = ".".join(p.name for p in target.parts)
    return TransferSpec(table=table, columns=columns, write_mode=mode, key=key, batch_size=batch)
