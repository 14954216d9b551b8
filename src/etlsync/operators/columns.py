"""Column operators: keep some columns (:class:`Select`) or rename them (:class:`Rename`).

Both keep change kinds and old row images aligned with the rows, and transform the batch's
schema (and so the primary key) the same way as the rows.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from etlsync.core.batch import Batch, Row
from etlsync.core.errors import ConfigError, DataError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Operator, OperatorOutput


def _names(columns: str | Iterable[str], what: str) -> tuple[str, ...]:
    cols = (columns,) if isinstance(columns, str) else tuple(columns)
    if not cols:
        raise ConfigError(f"{what}: needs at least one column")
    for c in cols:
        if not isinstance(c, str) or not c:
            raise ConfigError(f"{what}: column names must be non-empty strings, got {c!r}")
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if dupes:
        raise ConfigError(f"{what}: column(s) listed twice: {', '.join(dupes)}")
    return cols


class Select(Operator):
    """Keep only ``columns``, in that order.

    :param columns: the columns to keep.
    :param strict: raise :class:`DataError` when a row lacks a column; otherwise the
        column is filled with ``None`` (the default, so key-only delete images pass).
    :param rename: ``{column: new_name}`` for some of the kept columns: select and rename in
        one step (what ``Select`` followed by ``Rename`` does, with one dict per row).
    """

    def __init__(self, columns: str | Iterable[str], *, strict: bool = False,
                 rename: Mapping[str, str] | None = None, name: str = "select") -> None:
        self.columns = _names(columns, "select")
        self.strict = strict
        self.name = name
        self.rename = dict(rename or {})
        self.output = tuple(self.rename.get(c, c) for c in self.columns)
        dupes = sorted({c for c in self.output if self.output.count(c) > 1})
        if dupes:
            raise ConfigError(f"select: several columns would be called {', '.join(dupes)}")
        self._get = operator.itemgetter(*self.columns)

    def _row(self, row: Row, stream: str) -> Row:
        if self.strict:
            missing = [c for c in self.columns if c not in row]
            if missing:
                raise DataError(
                    f"select: stream {stream!r}: row lacks column(s) {', '.join(missing)} "
                    f"(row has: {', '.join(row)})", column=missing[0], row=row)
        return {o: row.get(c) for c, o in zip(self.columns, self.output, strict=True)}

    def transform_schema(self, schema: Schema) -> Schema:
        """The schema of the rows this operator emits."""
        by_name = {c.name: c for c in schema.columns}
        cols = []
        for n, out in zip(self.columns, self.output, strict=True):
            c = by_name.get(n, Column(n, ColumnType.UNKNOWN))
            cols.append(Column(out, c.type, c.nullable, c.native))
        return Schema(tuple(cols), tuple(self.rename.get(k, k) for k in schema.primary_key
                                         if k in self.columns))

    def _select_all(self, rows: list[Row]) -> list[Row]:
        cols, out, get = self.columns, self.output, self._get
        try:  # itemgetter and zip run in C; a missing column falls back to .get
            if len(cols) == 1:
                o = out[0]
                return [{o: get(r)} for r in rows]
            return [dict(zip(out, get(r), strict=True)) for r in rows]
        except KeyError:
            pairs = tuple(zip(cols, out, strict=True))
            return [{o: r.get(c) for c, o in pairs} for r in rows]

    async def process(self, batch: Batch) -> OperatorOutput:
        stream = batch.stream
        before = None
        if batch.before is not None:
            pairs = tuple(zip(self.columns, self.output, strict=True))
            before = [None if b is None else {o: b.get(c) for c, o in pairs}
                      for b in batch.before]
        schema = None if batch.schema is None else self.transform_schema(batch.schema)
        if batch.records is not None and batch.columns is not None:
            records = self._select_records(batch.columns, batch.records, stream)
            return batch.with_records(self.output, records, ops=batch.ops, before=before,
                                      schema=schema)
        rows = ([self._row(r, stream) for r in batch.rows] if self.strict
                else self._select_all(batch.rows))
        return batch.with_rows(rows, ops=batch.ops, before=before, schema=schema)

    def _select_records(self, columns: tuple[str, ...], records: list[Sequence[Any]],
                        stream: str) -> list[Sequence[Any]]:
        index = {c: i for i, c in enumerate(columns)}
        missing = [c for c in self.columns if c not in index]
        if missing and self.strict and records:
            raise DataError(
                f"select: stream {stream!r}: row lacks column(s) {', '.join(missing)} "
                f"(row has: {', '.join(columns)})", column=missing[0],
                row=dict(zip(columns, records[0], strict=True)))
        if missing:
            return [tuple(r[index[c]] if c in index else None for c in self.columns)
                    for r in records]
        if len(self.columns) == 1:
            i = index[self.columns[0]]
            return [(r[i],) for r in records]
        return list(map(operator.itemgetter(*[index[c] for c in self.columns]), records))

    def then_rename(self, rename: Rename) -> Select:
        """One operator doing this selection followed by ``rename``."""
        mapping = {c: rename.mapping.get(o, o) for c, o in zip(self.columns, self.output,
                                                                   strict=True)}
        return Select(self.columns, strict=self.strict, rename=mapping,
                      name=f"{self.name}+{rename.name}")


class Rename(Operator):
    """Rename columns: ``mapping`` is ``{old: new}``; other columns keep their names.

    :raises ConfigError: when two columns would get the same name.
    """

    def __init__(self, mapping: Mapping[str, str], *, name: str = "rename") -> None:
        if not isinstance(mapping, Mapping) or not mapping:
            raise ConfigError("rename: needs a non-empty mapping {old_name: new_name}")
        for old, new in mapping.items():
            if not isinstance(old, str) or not isinstance(new, str) or not old or not new:
                raise ConfigError(f"rename: names must be non-empty strings, got {old!r}: {new!r}")
        targets = list(mapping.values())
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ConfigError(f"rename: several columns renamed to {', '.join(dupes)}")
        self.mapping = dict(mapping)
        self.name = name
        self._last_keys: tuple[str, ...] = ()
        self._last_new: tuple[str, ...] = ()

    def _new_keys(self, row: Row) -> tuple[str, ...]:
        m = self.mapping
        new = tuple(m.get(k, k) for k in row)
        if len(set(new)) != len(new):
            clash = sorted(set(m.values()) & (set(row) - set(m)))
            raise DataError(
                f"rename: column(s) {', '.join(clash)} exist already; renaming onto them "
                "would lose a value",
                column=clash[0] if clash else None, row=row)
        return new

    def _rename_all(self, rows: list[Row | None]) -> list[Row | None]:
        out: list[Row | None] = []
        append = out.append
        last, new = self._last_keys, self._last_new
        for row in rows:
            if row is None:
                append(None)
                continue
            keys = tuple(row)
            if keys != last:  # rows of a stream mostly share their columns
                new, last = self._new_keys(row), keys
            append(dict(zip(new, row.values(), strict=False)))
        self._last_keys, self._last_new = last, new
        return out

    def transform_schema(self, schema: Schema) -> Schema:
        """The schema of the rows this operator emits."""
        m = self.mapping
        cols = tuple(Column(m.get(c.name, c.name), c.type, c.nullable, c.native)
                     for c in schema.columns)
        return Schema(cols, tuple(m.get(k, k) for k in schema.primary_key))

    async def process(self, batch: Batch) -> OperatorOutput:
        before = None if batch.before is None else self._rename_all(batch.before)
        schema = None if batch.schema is None else self.transform_schema(batch.schema)
        records, columns = batch.records, batch.columns
        if records is not None and columns is not None:
            # record form: only the names change, the values are shared as they are
            new = self._new_keys(dict.fromkeys(columns)) if records else columns
            return batch.with_records(new, records, ops=batch.ops, before=before, schema=schema)
        rows = cast(list[Row], self._rename_all(cast(list[Row | None], batch.rows)))
        return batch.with_rows(rows, ops=batch.ops, before=before, schema=schema)
