"""Cleaning values, and splitting and merging columns (stateless, column at a time)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from etlsync.core.batch import Batch
from etlsync.core.errors import ConfigError, DataError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Operator, OperatorOutput
from etlsync.operators._common import check_columns

_CASES: dict[str, Callable[[str], str]] = {"lower": str.lower, "upper": str.upper,
                                           "title": str.title, "casefold": str.casefold}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


def _columns_of(batch: Batch) -> tuple[list[str], list[list[Any]]]:
    """The batch's columns and their values, column by column (any form)."""
    cols = batch.column_names()
    view = batch.view(cols)
    if not view:
        return cols, [[] for _ in cols]
    return cols, [list(c) for c in zip(*view, strict=True)]


def _records_batch(batch: Batch, cols: Sequence[str], values: Sequence[Sequence[Any]]) -> Batch:
    records = list(zip(*values, strict=True)) if values else [()] * len(batch)
    return batch.with_records(list(cols), records)  # type: ignore[arg-type]


class Clean(Operator):
    """Normalise string values: ``trim`` whitespace, turn ``nulls`` (e.g. ``["", "N/A"]``)
    into ``None``, apply regex ``replace`` rules (``{column: [[pattern, replacement], ...]}``,
    Python ``re`` syntax, ``\\1`` groups), change ``case`` (``{column: lower | upper | title |
    casefold}``) and fill ``defaults`` for ``None`` values (``{column: value}``), in that
    order. ``trim`` and ``nulls`` apply to ``columns`` (default: every column); values that
    are not strings are left as they are (defaults fill any ``None``)."""

    def __init__(self, *, trim: bool = True, nulls: Sequence[str] = (),
                 replace: dict[str, Any] | None = None, case: dict[str, str] | None = None,
                 defaults: dict[str, Any] | None = None, columns: Sequence[str] | None = None,
                 name: str = "clean") -> None:
        self.name = name
        where = f"clean {name!r}"
        self.trim = trim
        self.nulls = frozenset(nulls)
        self.columns = None if columns is None else check_columns(where, columns, "columns")
        self.replace: dict[str, list[tuple[re.Pattern[str], str]]] = {}
        for col, rules in (replace or {}).items():
            pairs = list(rules.items()) if isinstance(rules, dict) else list(rules)
            compiled = []
            for pair in pairs:
                if not isinstance(pair, list | tuple) or len(pair) != 2:
                    raise ConfigError(f"{where}: replace.{col}: expected [pattern, replacement] "
                                      f"pairs, got {pair!r}")
                try:
                    compiled.append((re.compile(str(pair[0])), str(pair[1])))
                except re.error as exc:
                    raise ConfigError(f"{where}: replace.{col}: bad pattern {pair[0]!r}: "
                                      f"{exc}") from None
            self.replace[col] = compiled
        self.case: dict[str, Callable[[str], str]] = {}
        for col, how in (case or {}).items():
            if how not in _CASES:
                raise ConfigError(f"{where}: case.{col}: {how!r} is not one of "
                                  f"{', '.join(_CASES)}")
            self.case[col] = _CASES[how]
        self.defaults = dict(defaults or {})
        self.changed = 0

    def extra_metrics(self) -> dict[str, Any]:
        return {"values_changed": self.changed}

    def transform_schema(self, schema: Schema) -> Schema:
        return schema

    def _pipeline(self, col: str) -> Callable[[Any], Any] | None:
        steps: list[Callable[[Any], Any]] = []
        general = self.columns is None or col in self.columns
        nulls, trim = self.nulls, self.trim and general
        if trim or (nulls and general):
            def basic(v: Any) -> Any:
                if type(v) is not str:
                    return v
                if trim:
                    v = v.strip()
                return None if v in nulls else v
            steps.append(basic)
        for pattern, repl in self.replace.get(col, ()):
            steps.append(_regex_step(pattern, repl))
        if col in self.case:
            steps.append(_case_step(self.case[col]))
        if col in self.defaults:
            steps.append(_default_step(self.defaults[col]))
        if not steps:
            return None
        if len(steps) == 1:
            return steps[0]

        def run(v: Any) -> Any:
            for step in steps:
                v = step(v)
            return v
        return run

    async def process(self, batch: Batch) -> OperatorOutput:
        if not len(batch):
            return batch
        cols, values = _columns_of(batch)
        missing = [c for c in self.defaults if c not in cols]
        for c in missing:  # a default fills a column the rows lack
            cols.append(c)
            values.append([None] * len(batch))
        changed = 0
        for j, col in enumerate(cols):
            fn = self._pipeline(col)
            if fn is not None:
                old = values[j]
                new = list(map(fn, old))
                changed += sum(1 for a, b in zip(old, new, strict=True) if a is not b and a != b)
                values[j] = new
        self.changed += changed
        return _records_batch(batch, cols, values)


def _regex_step(pattern: re.Pattern[str], repl: str) -> Callable[[Any], Any]:
    return lambda v: pattern.sub(repl, v) if type(v) is str else v


def _case_step(fn: Callable[[str], str]) -> Callable[[Any], Any]:
    return lambda v: fn(v) if type(v) is str else v


def _default_step(default: Any) -> Callable[[Any], Any]:
    return lambda v: default if v is None else v


class SplitColumns(Operator):
    """Split ``column`` into the columns ``into``: on ``delimiter`` (at most
    ``len(into) - 1`` splits; missing parts are ``None``), or by the groups of ``regex``
    (named groups give the names when ``into`` is empty; a value that does not match gives
    ``None`` s, or an error with ``on_mismatch="fail"``). ``keep`` keeps the original
    column; ``trim`` strips the parts."""

    def __init__(self, column: str, into: Sequence[str] = (), *, delimiter: str | None = None,
                 regex: str | None = None, keep: bool = False, trim: bool = True,
                 on_mismatch: str = "null", name: str = "split_columns") -> None:
        self.name = name
        where = f"split_columns {name!r}"
        self.column = column
        if (delimiter is None) == (regex is None):
            raise ConfigError(f"{where}: give a delimiter or a regex (exactly one)")
        if on_mismatch not in ("null", "fail"):
            raise ConfigError(f"{where}: on_mismatch is null or fail, not {on_mismatch!r}")
        self.pattern: re.Pattern[str] | None = None
        if regex is not None:
            try:
                self.pattern = re.compile(regex)
            except re.error as exc:
                raise ConfigError(f"{where}: bad regex {regex!r}: {exc}") from None
            named = list(self.pattern.groupindex)
            into = list(into) or named
            if len(into) != self.pattern.groups:
                raise ConfigError(f"{where}: the regex has {self.pattern.groups} groups for "
                                  f"{len(into)} columns {list(into)}")
        self.into = check_columns(where, into, "into")
        if not self.into:
            raise ConfigError(f"{where}: into names the new columns")
        if delimiter == "":
            raise ConfigError(f"{where}: the delimiter is empty")
        self.delimiter = delimiter
        self.keep, self.trim, self.on_mismatch = keep, trim, on_mismatch

    def transform_schema(self, schema: Schema) -> Schema:
        cols = [c for c in schema.columns if self.keep or c.name != self.column]
        cols = [c for c in cols if c.name not in self.into]
        cols += [Column(n, ColumnType.STRING) for n in self.into]
        return Schema(tuple(cols), schema.primary_key)

    def _split(self, v: Any, index: int, stream: str) -> tuple[Any, ...]:
        n = len(self.into)
        if v is None:
            return (None,) * n
        text = v if type(v) is str else str(v)
        if self.pattern is not None:
            m = self.pattern.search(text)
            if m is None:
                if self.on_mismatch == "fail":
                    raise DataError(f"split_columns {self.name!r}: stream {stream!r}, row "
                                    f"{index}: {self.column}={text!r} does not match "
                                    f"{self.pattern.pattern!r}", column=self.column, value=v)
                return (None,) * n
            parts: list[Any] = list(m.groups())
        else:
            assert self.delimiter is not None
            parts = [*text.split(self.delimiter, n - 1)]
            parts += [None] * (n - len(parts))
        if self.trim:
            parts = [p.strip() if type(p) is str else p for p in parts]
        return tuple(parts)

    async def process(self, batch: Batch) -> OperatorOutput:
        if not len(batch):
            return batch
        cols, values = _columns_of(batch)
        if self.column not in cols:
            raise DataError(f"split_columns {self.name!r}: stream {batch.stream!r} has no "
                            f"column {self.column!r} (columns: {', '.join(cols)})",
                            column=self.column)
        src = values[cols.index(self.column)]
        stream = batch.stream
        parts = [self._split(v, i, stream) for i, v in enumerate(src)]
        keep = [j for j, c in enumerate(cols) if (self.keep or c != self.column)
                and c not in self.into]
        out_cols = [cols[j] for j in keep] + self.into
        out_values = [values[j] for j in keep] + [list(p) for p in zip(*parts, strict=True)]
        return _records_batch(batch, out_cols, out_values)


class MergeColumns(Operator):
    """Merge ``columns`` into one column ``into``: joined with ``separator`` (``None``
    values skipped), or rendered with ``template`` (``"{first} {last}"``: only ``{name}``
    placeholders, ``{{`` and ``}}`` for braces; ``None`` renders as ``""``). ``drop``
    removes the merged columns."""

    def __init__(self, into: str, columns: Sequence[str] = (), *, separator: str = " ",
                 template: str | None = None, drop: bool = False,
                 name: str = "merge_columns") -> None:
        self.name = name
        where = f"merge_columns {name!r}"
        self.into = into
        self.template = template
        self.parts: list[str | int] = []
        if template is not None:
            names: list[str] = []
            for m in _PLACEHOLDER.finditer(template):
                tok = m.group(0)
                if m.group(1):
                    names.append(m.group(1))
                elif tok not in ("{{", "}}"):
                    raise ConfigError(f"{where}: template {template!r}: a lone {tok!r} at "
                                      f"position {m.start()} (write {tok * 2} for a brace)")
            columns = list(columns) or list(dict.fromkeys(names))
            if set(names) - set(columns):
                raise ConfigError(f"{where}: template names {sorted(set(names) - set(columns))}"
                                  f" outside columns {list(columns)}")
            self._render = self._compile(template)
        self.columns = check_columns(where, columns, "columns")
        if not self.columns:
            raise ConfigError(f"{where}: columns names the columns to merge")
        self.separator, self.drop = separator, drop

    @staticmethod
    def _compile(template: str) -> Callable[[dict[str, Any]], str]:
        pieces: list[tuple[bool, str]] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(template):
            pieces.append((False, template[pos:m.start()]))
            tok = m.group(0)
            pieces.append((True, m.group(1)) if m.group(1) else (False, tok[0]))
            pos = m.end()
        pieces.append((False, template[pos:]))

        def render(values: dict[str, Any]) -> str:
            return "".join(("" if values[p] is None else str(values[p])) if is_name else p
                           for is_name, p in pieces)
        return render

    def transform_schema(self, schema: Schema) -> Schema:
        cols = [c for c in schema.columns if c.name != self.into
                and not (self.drop and c.name in self.columns)]
        return Schema((*cols, Column(self.into, ColumnType.STRING)), schema.primary_key)

    async def process(self, batch: Batch) -> OperatorOutput:
        if not len(batch):
            return batch
        cols, values = _columns_of(batch)
        lacking = [c for c in self.columns if c not in cols]
        if lacking:
            raise DataError(f"merge_columns {self.name!r}: stream {batch.stream!r} has no "
                            f"column(s) {lacking} (columns: {', '.join(cols)})")
        picked = [values[cols.index(c)] for c in self.columns]
        if self.template is not None:
            names = self.columns
            merged = [self._render(dict(zip(names, vs, strict=True)))
                      for vs in zip(*picked, strict=True)]
        else:
            sep = self.separator
            merged = [sep.join(str(v) for v in vs if v is not None)
                      for vs in zip(*picked, strict=True)]
        keep = [j for j, c in enumerate(cols) if c != self.into
                and not (self.drop and c in self.columns)]
        return _records_batch(batch, [cols[j] for j in keep] + [self.into],
                              [values[j] for j in keep] + [merged])
