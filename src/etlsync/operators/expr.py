"""A small, safe expression language for row filters: :func:`compile_expr` and :class:`FilterExpr`.

Expressions use Python syntax, parsed with :mod:`ast` and checked against a whitelist, then
compiled into closures (never ``eval``). Allowed: column names, literals (numbers, strings,
``True``/``False``/``None``, lists/tuples/sets of them), comparisons (``== != < <= > >=``,
chained), ``in`` / ``not in``, ``is None`` / ``is not None``, ``and`` / ``or`` / ``not``,
arithmetic (``+ - * / // %``, unary minus) and a few functions: ``lower upper len abs round
min max str int float decimal date datetime coalesce col``. ``col("odd name")`` reads a
column whose name is not an identifier.

NULL semantics follow SQL where it matters: an ordering comparison (``<``, ``>``, ...) or an
arithmetic operation involving ``None`` is false / ``None``, never an exception.
"""

from __future__ import annotations

import ast
import datetime as dt
import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from etlsync.core.batch import Batch, Op, Row
from etlsync.core.errors import ConfigError, DataError
from etlsync.core.schema import Schema
from etlsync.core.stages import Operator, OperatorOutput

Compiled = Callable[[Any], Any]
"""A compiled expression: a function of a row dict (or of a record, see ``layout``)."""

_CMP: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _nullsafe(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        return None if any(a is None for a in args) else fn(*args)
    return call


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lower": _nullsafe(str.lower), "upper": _nullsafe(str.upper), "len": _nullsafe(len),
    "abs": _nullsafe(abs), "round": _nullsafe(round), "min": min, "max": max,
    "str": _nullsafe(str), "int": _nullsafe(int), "float": _nullsafe(float),
    "decimal": _nullsafe(lambda v: Decimal(str(v))),
    "date": _nullsafe(dt.date.fromisoformat), "datetime": _nullsafe(dt.datetime.fromisoformat),
    "coalesce": _coalesce,
}


class _Compiler:
    """Compiles to closures over a row dict, or, with ``layout`` (column name -> position),
    over a record (a value sequence in that column order; an absent column reads None)."""

    def __init__(self, source: str, layout: dict[str, int] | None = None) -> None:
        self.source = source
        self.columns: set[str] = set()
        self.layout = layout

    def column(self, name: str) -> Compiled:
        """A closure reading column ``name``."""
        self.columns.add(name)
        if self.layout is None:
            return lambda r: r.get(name)
        i = self.layout.get(name)
        if i is None:
            return lambda r: None
        return lambda r: r[i]

    def fail(self, node: ast.AST, what: str) -> ConfigError:
        col = getattr(node, "col_offset", None)
        where = f" at column {col + 1}" if col is not None else ""
        return ConfigError(f"filter expression {self.source!r}: {what}{where}")

    def compile(self, node: ast.AST) -> Compiled:
        if isinstance(node, ast.Expression):
            return self.compile(node.body)
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float | str | bool | type(None)):
                raise self.fail(node, f"literal {node.value!r} is not allowed")
            value = node.value
            return lambda r: value
        if isinstance(node, ast.Name):
            name = node.id
            if name in ("true", "false", "null"):
                raise self.fail(node, f"unknown name {name!r} (write True, False or None)")
            return self.column(name)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items = [self.compile(e) for e in node.elts]
            if all(isinstance(e, ast.Constant) for e in node.elts):
                const = frozenset(e({}) for e in items)  # literals only: a fast lookup set
                return lambda r: const
            return lambda r: tuple(e(r) for e in items)
        if isinstance(node, ast.BoolOp):
            parts = [self.compile(v) for v in node.values]
            combined = parts[0]
            for nxt in parts[1:]:
                combined = (_and(combined, nxt) if isinstance(node.op, ast.And)
                            else _or(combined, nxt))
            return combined
        if isinstance(node, ast.UnaryOp):
            inner = self.compile(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda r: not inner(r)
            if isinstance(node.op, ast.USub):
                return lambda r: None if (v := inner(r)) is None else -v
            if isinstance(node.op, ast.UAdd):
                return inner
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node, ast.BinOp):
            fn = _ARITH.get(type(node.op))
            if fn is None:
                raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
            left, right = self.compile(node.left), self.compile(node.right)
            return lambda r: (None if (a := left(r)) is None or (b := right(r)) is None
                              else fn(a, b))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise self.fail(node, f"{type(node).__name__} is not allowed "
                              "(only columns, literals, comparisons, and/or/not, in, arithmetic)")

    def _compare(self, node: ast.Compare) -> Compiled:
        fast = self._column_vs_literal(node)
        if fast is not None:
            return fast
        operands = [self.compile(node.left)] + [self.compile(c) for c in node.comparators]
        steps: list[Callable[[Any, Any], bool]] = []
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot):
                if not (isinstance(right, ast.Constant) and right.value is None):
                    raise self.fail(node, "'is' / 'is not' may only compare with None")
                steps.append(_is if isinstance(op, ast.Is) else _is_not)
            elif isinstance(op, ast.Eq):
                steps.append(operator.eq)
            elif isinstance(op, ast.NotEq):
                steps.append(operator.ne)
            elif isinstance(op, ast.In):
                steps.append(_in)
            elif isinstance(op, ast.NotIn):
                steps.append(_not_in)
            else:
                steps.append(_ordered(_CMP[type(op)]))
        if len(steps) == 1:
            a, b, step = operands[0], operands[1], steps[0]
            return lambda r: step(a(r), b(r))

        def chain(r: Row) -> bool:
            left = operands[0](r)
            for step, nxt in zip(steps, operands[1:], strict=True):
                right = nxt(r)
                if not step(left, right):
                    return False
                left = right
            return True
        return chain

    def _column_vs_literal(self, node: ast.Compare) -> Compiled | None:
        """``column OP literal``, the common case, as one closure."""
        if len(node.ops) != 1 or not isinstance(node.left, ast.Name):
            return None
        op, right = node.ops[0], node.comparators[0]
        if not isinstance(right, ast.Constant) or right.value is None \
                or isinstance(op, ast.Is | ast.IsNot | ast.In | ast.NotIn) \
                or node.left.id in ("true", "false", "null"):
            return None
        if not isinstance(right.value, int | float | str | bool):
            raise self.fail(right, f"literal {right.value!r} is not allowed")
        name, c = node.left.id, right.value
        self.columns.add(name)
        i = None if self.layout is None else self.layout.get(name, -1)
        eq, ne = isinstance(op, ast.Eq), isinstance(op, ast.NotEq)
        if i == -1:  # a record without the column: the value is None
            return lambda r: ne
        if i is not None:
            if eq:
                return lambda r: r[i] == c
            if ne:
                return lambda r: r[i] != c
            fn = _CMP[type(op)]
            return lambda r: (v := r[i]) is not None and fn(v, c)
        if eq:
            return lambda r: r.get(name) == c
        if ne:
            return lambda r: r.get(name) != c
        fn = _CMP[type(op)]
        return lambda r: (v := r.get(name)) is not None and fn(v, c)

    def _call(self, node: ast.Call) -> Compiled:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise self.fail(node, "only calls of allowed functions with positional arguments")
        fname = node.func.id
        if fname == "col":
            arg = node.args[0] if len(node.args) == 1 else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise self.fail(node, "col() takes one string literal: col(\"column name\")")
            return self.column(arg.value)
        fn = FUNCTIONS.get(fname)
        if fn is None:
            raise self.fail(node, f"unknown function {fname!r}; allowed: col, "
                                  + ", ".join(sorted(FUNCTIONS)))
        args = [self.compile(a) for a in node.args]
        if len(args) == 1:
            a0 = args[0]
            return lambda r: fn(a0(r))
        return lambda r: fn(*(a(r) for a in args))


def _and(a: Compiled, b: Compiled) -> Compiled:
    return lambda r: a(r) and b(r)


def _or(a: Compiled, b: Compiled) -> Compiled:
    return lambda r: a(r) or b(r)


def _is(a: Any, b: Any) -> bool:
    return a is None


def _is_not(a: Any, b: Any) -> bool:
    return a is not None


def _in(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a in b


def _not_in(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a not in b


def _ordered(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    def cmp(a: Any, b: Any) -> bool:
        return a is not None and b is not None and bool(fn(a, b))
    return cmp


def compile_expr(source: str, layout: dict[str, int] | None = None
                 ) -> tuple[Compiled, frozenset[str]]:
    """Compile ``source`` into a function of a row, and the set of columns it reads. With
    ``layout`` (column name -> position) the function takes a record instead of a row.

    :raises ConfigError: on a syntax error or a construct outside the whitelist.
    """
    if not isinstance(source, str) or not source.strip():
        raise ConfigError("filter expression must be a non-empty string")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"filter expression {source!r}: syntax error at column "
                          f"{exc.offset}: {exc.msg}") from None
    comp = _Compiler(source, layout)
    fn = comp.compile(tree)
    return fn, frozenset(comp.columns)


class FilterExpr(Operator):
    """Keep the rows for which ``expression`` is true, e.g.
    ``FilterExpr("amount > 10 and status == 'paid'")``.

    Deletes and truncates always pass, like :class:`~etlsync.operators.Filter`. A value the
    expression cannot handle (``'abc' > 10``) raises :class:`DataError` naming the
    expression, the stream, the row and the values it read.
    """

    def __init__(self, expression: str, *, name: str = "filter") -> None:
        self.expression = expression
        self.predicate, self.columns = compile_expr(expression)
        self.name = name
        self._seen: dict[str, int] = {}
        self._by_layout: dict[tuple[str, ...], Compiled] = {}

    def transform_schema(self, schema: Schema) -> Schema:
        return schema

    def _record_predicate(self, columns: tuple[str, ...]) -> Compiled:
        pred = self._by_layout.get(columns)
        if pred is None:
            layout = {c: i for i, c in enumerate(columns)}
            pred = self._by_layout[columns] = compile_expr(self.expression, layout)[0]
        return pred

    def _test(self, row: Row, batch: Batch, index: int, base: int) -> bool:
        try:
            return bool(self.predicate(row))
        except Exception as exc:
            values = ", ".join(f"{c}={row.get(c)!r}" for c in sorted(self.columns))
            raise DataError(
                f"filter {self.expression!r}: stream {batch.stream!r}, row {base + index + 1}: "
                f"{type(exc).__name__}: {exc} (values: {values})",
                row=base + index + 1,
            ) from exc

    async def process(self, batch: Batch) -> OperatorOutput:
        base = self._seen.get(batch.stream, 0)
        self._seen[batch.stream] = base + len(batch)
        records, columns = batch.records, batch.columns
        if records is not None and columns is not None and batch.ops is None:
            pred = self._record_predicate(columns)
            try:
                return batch.with_records(columns, [r for r in records if pred(r)])
            except Exception:
                for i, row in enumerate(batch.rows):  # name the row that failed
                    self._test(row, batch, i, base)
                raise
        pred, rows = self.predicate, batch.rows
        try:
            if batch.ops is None:
                return batch.with_rows([r for r in rows if pred(r)])
            keep = [i for i, (op, r) in enumerate(zip(batch.ops, rows, strict=True))
                    if op in (Op.DELETE, Op.TRUNCATE) or pred(r)]
        except Exception:
            for i, r in enumerate(rows):
                if batch.ops is None or batch.ops[i] not in (Op.DELETE, Op.TRUNCATE):
                    self._test(r, batch, i, base)
            raise
        before = batch.before
        return batch.with_rows(
            [rows[i] for i in keep], ops=[batch.ops[i] for i in keep],
            before=None if before is None else [before[i] for i in keep],
        )
