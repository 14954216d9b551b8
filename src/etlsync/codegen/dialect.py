"""SQL for the target database and driver: dialect transpilation (sqlglot) with parameters
rewritten by us around it (sqlglot would turn PostgreSQL ``$1`` into a MySQL user variable
``@1``), and constructs that do not translate named with their line and column."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, UnsupportedError

from etlsync.codegen.model import Query
from etlsync.codegen.parse import SENTINEL, parse_canonical

STYLES = ("dollar", "qmark", "pyformat", "knex")
"""``dollar``: ``$1`` (PostgreSQL drivers); ``qmark``: ``?`` per occurrence (JDBC, MySQL
drivers); ``pyformat``: ``%(name)s`` (Python DB-API; a literal ``%`` is doubled); ``knex``:
``?`` per occurrence for ``knex.raw`` (a literal ``?`` is written ``\\?``)."""

_CANON = re.compile(r":" + SENTINEL + r"(\d+)\b")
_MARK = re.compile(r"ETLP(\d+)X")


@dataclass(frozen=True, slots=True)
class Rendered:
    """SQL for one driver and the parameter index bound at each placeholder, in order."""

    sql: str
    args: list[int]
    shifts: list[tuple[int, int]]  # (offset in sql after a placeholder, sql offset - input offset)

    def input_offset(self, offset: int) -> int:
        """The offset in the text given to :func:`render` of an offset in :attr:`sql`."""
        delta = 0
        for start, shift in self.shifts:
            if offset >= start:
                delta = shift
        return offset - delta


def target_sql(q: Query, source: str, target: str) -> str:
    """The query's text in ``target``'s dialect, parameters still ``:etlp_<i>``."""
    if source == target:
        return q.canonical
    tree = parse_canonical(q, source)
    return transpile_tree(q, tree, target)


def transpile_tree(q: Query, tree: exp.Expr, target: str) -> str:
    _refuse_untranslatable(q, tree, target)
    tree = tree.copy()
    for ph in list(tree.find_all(exp.Placeholder)):
        name = str(ph.this or "")
        if name.startswith(SENTINEL):
            ph.replace(exp.Var(this=f"ETLP{name[len(SENTINEL):]}X"))
    try:
        text = tree.sql(dialect=target, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        node = _unsupported_node(tree, target)
        raise q.error(f"does not translate to {target}: {exc}", _start(node)) from None
    return _MARK.sub(lambda m: f":{SENTINEL}{m[1]}", text)


def render(q: Query, sql: str, style: str) -> Rendered:
    """Replace the ``:etlp_<i>`` placeholders of ``sql`` with the driver's placeholders."""
    if style not in STYLES:
        raise ValueError(f"placeholder style {style!r}")
    args: list[int] = []
    pieces: list[str] = []
    shifts: list[tuple[int, int]] = []
    last = size = 0
    for m in _CANON.finditer(sql):
        text = escape_text(sql[last:m.start()], style)
        index = int(m[1])
        placeholder = mark(style, index, q.params[index].name)
        if style in ("qmark", "knex"):
            args.append(index)
        pieces += [text, placeholder]
        size += len(text) + len(placeholder)
        shifts.append((size, size - m.end()))
        last = m.end()
    pieces.append(escape_text(sql[last:], style))
    if style in ("dollar", "pyformat"):
        args = [p.index for p in q.params]
    return Rendered("".join(pieces), args, shifts)


def mark(style: str, index: int, name: str) -> str:
    """The placeholder of parameter ``index`` (0-based) named ``name`` in ``style``."""
    if style == "dollar":
        return f"${index + 1}"
    if style == "pyformat":
        return f"%({name})s"
    return "?"


def escape_text(text: str, style: str) -> str:
    """SQL text (no placeholders in it) as ``style``'s driver must see it to keep it literal."""
    if style == "pyformat":
        return text.replace("%", "%%")
    if style == "knex":
        return text.replace("?", "\\?")
    return text


def placeholder_style(dialect: str) -> str:
    return "dollar" if dialect == "postgres" else "qmark"


# -- what does not translate -------------------------------------------------------------------
_REFUSED: dict[str, list[tuple[type[exp.Expr], str]]] = {
    "mysql": [
        (exp.Array, "arrays (MySQL/MariaDB have none)"),
        (exp.Lateral, "LATERAL joins"),
        (exp.GenerateSeries, "generate_series"),
        (exp.JSONExtract, "JSON operators -> / ->> (MariaDB has none)"),
        (exp.JSONExtractScalar, "JSON operators -> / ->> (MariaDB has none)"),
        (exp.JSONBExtract, "JSONB operators (MariaDB has none)"),
        (exp.JSONBExtractScalar, "JSONB operators (MariaDB has none)"),
    ],
    "postgres": [],
}


def _refuse_untranslatable(q: Query, tree: exp.Expr, target: str) -> None:
    for node in tree.walk():
        for kind, what in _REFUSED.get(target, []):
            if isinstance(node, kind):
                raise q.error(f"does not translate to {target}: {what}", _start(node))
        if target == "mysql" and isinstance(node, exp.Update) and node.args.get("returning"):
            raise q.error("does not translate to mysql: UPDATE ... RETURNING", _start(node))
        if target == "postgres" and isinstance(node, exp.OnConflict) and node.args.get("duplicate"):
            raise q.error("does not translate to postgres: ON DUPLICATE KEY UPDATE (write "
                          "INSERT ... ON CONFLICT (key) DO UPDATE for PostgreSQL)", _start(node))


def _unsupported_node(tree: exp.Expr, target: str) -> exp.Expr:
    """The smallest node whose SQL alone does not translate (for the error's position)."""
    found = tree
    for node in tree.walk():
        try:
            node.sql(dialect=target, unsupported_level=ErrorLevel.RAISE)
        except UnsupportedError:
            found = node
        except Exception:  # noqa: BLE001 - a fragment that cannot stand alone
            continue
    return found


def _start(node: exp.Expr) -> int | None:
    starts = [n.meta["start"] for n in node.walk() if isinstance(n.meta.get("start"), int)]
    return min(starts) if starts else None


def transpile_text(sql: str, source: str, target: str) -> str:
    """Plain transpilation of parameter-free SQL (used for DDL in tests and docs)."""
    return ";\n".join(sqlglot.transpile(sql, read=source, write=target))
