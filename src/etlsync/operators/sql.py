"""SQL over batches: a statement run by DuckDB over each batch (or each pass) as a table, on
the arrow form (``pip install 'etlsync[sql]'``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from etlsync.core.batch import Batch
from etlsync.core.errors import ConfigError, DataError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Operator, OperatorOutput

_LINE = re.compile(r"LINE (\d+): (.*)\n( *)(\^+)")
_QUOTED = re.compile(r'"([^"]+)"')
_TO_ARROW = {ColumnType.INTEGER: "int64", ColumnType.FLOAT: "float64",
             ColumnType.BOOLEAN: "bool", ColumnType.DATE: "date32",
             ColumnType.DATETIME: "timestamp[us]", ColumnType.BYTES: "binary"}


def position_in(statement: str, message: str) -> tuple[int, int] | None:
    """Line and column (from 1) in ``statement`` that a DuckDB error ``message`` points at:
    its caret, else the first quoted name it mentions."""
    m = _LINE.search(message)
    if m is not None:
        prefix = len(f"LINE {m.group(1)}: ")
        line_text = m.group(2)
        col = len(m.group(3)) - prefix + 1
        line = int(m.group(1))
        lines = statement.splitlines() or [""]
        # DuckDB prints a window of the line; find it in the statement to get the column
        if 1 <= line <= len(lines):
            found = lines[line - 1].find(line_text.strip(". "))
            if found >= 0 and line_text.startswith("..."):
                col += found - 3
        return line, max(col, 1)
    for name in _QUOTED.findall(message):
        for n, text in enumerate(statement.splitlines(), 1):
            hit = re.search(rf"\b{re.escape(name)}\b", text)
            if hit:
                return n, hit.start() + 1
    return None


def _describe(statement: str, exc: BaseException, where: str) -> str:
    message = str(exc)
    pos = position_in(statement, message)
    at = f" at line {pos[0]}, column {pos[1]}" if pos else ""
    first = message.splitlines()[0] if message else type(exc).__name__
    return f"{where}: {first}{at} of the statement {statement!r}"


def _arrow(batch: Batch) -> Any:
    import pyarrow as pa

    if batch.form == "arrow":
        return batch.arrow
    cols = batch.column_names()
    view = batch.view(cols)
    columns: list[Sequence[Any]] = list(zip(*view, strict=True)) if view else [[] for _ in cols]
    return pa.table({c: pa.array(list(v)) for c, v in zip(cols, columns, strict=True)})


def _column_type(arrow_type: Any) -> ColumnType:
    import pyarrow as pa

    from etlsync.connectors.files.parquet import arrow_column_type

    return arrow_column_type(pa, arrow_type)


class Sql(Operator):
    """Run ``statement`` (one SQL query) with the batch as the table ``table``.

    ``over="batch"`` runs it on every batch (filters, projections, per-batch aggregates);
    ``over="pass"`` holds the batches of a pass (at most ``max_rows`` rows, else an error)
    and runs it once at the end of the pass, over all of them (a batch job's whole input);
    ``over="rows"`` runs it over windows of at least ``window_rows`` rows (whole batches,
    the last window of a pass may be shorter).
    The result is an arrow-form batch. DuckDB (``pip install 'etlsync[sql]'``) runs it
    in-process, on one connection of its own; the statement is parsed when the operator is
    made, and an error names the statement and the line and column it points at.
    """

    def __init__(self, statement: str, *, table: str = "batch", over: str = "batch",
                 window_rows: int | None = None, max_rows: int = 5_000_000,
                 threads: int | None = None, name: str = "sql") -> None:
        self.name = name
        self.where = f"sql {name!r}"
        if over not in ("batch", "pass", "rows"):
            raise ConfigError(f"{self.where}: over is batch, pass or rows, not {over!r}")
        if (over == "rows") != (window_rows is not None) or (window_rows or 1) < 1:
            raise ConfigError(f"{self.where}: over: rows goes with window_rows (a positive "
                              "row count), and only with it")
        self.window_rows = window_rows
        if not table.isidentifier():
            raise ConfigError(f"{self.where}: table {table!r} must be a plain identifier")
        self.statement, self.table, self.over = statement, table, over
        self.max_rows, self.threads = max_rows, threads
        import duckdb

        self._duckdb = duckdb
        self._con = duckdb.connect()
        if threads is not None:
            self._con.execute(f"SET threads = {int(threads)}")
        try:
            statements = self._con.extract_statements(statement)
        except duckdb.Error as exc:
            raise ConfigError(_describe(statement, exc, self.where)) from None
        if len(statements) != 1:
            raise ConfigError(f"{self.where}: give exactly one statement, got "
                              f"{len(statements)} in {statement!r}")
        self._held: list[Batch] = []
        self._held_rows = 0

    def _run(self, table: Any) -> Any:
        con = self._con
        con.register(self.table, table)
        try:
            return con.sql(self.statement).to_arrow_table()
        except self._duckdb.Error as exc:
            raise DataError(_describe(self.statement, exc, self.where)) from None
        finally:
            con.unregister(self.table)

    def transform_schema(self, schema: Schema) -> Schema | None:
        import pyarrow as pa

        fields = [pa.field(c.name, _TO_ARROW.get(c.type, "string")) for c in schema.columns]
        try:
            out = self._run(pa.schema(fields).empty_table())
        except DataError:
            return None
        return Schema(tuple(Column(f.name, _column_type(f.type)) for f in out.schema))

    async def process(self, batch: Batch) -> OperatorOutput:
        if self.over == "batch":
            if not len(batch):
                return batch if batch.end_of_pass else None
            return Batch(None, batch.stream, batch.position, arrow=self._run(_arrow(batch)),
                         end_of_pass=batch.end_of_pass)
        if len(batch):
            batch.retain()  # the checkpoint waits for the pass's result
            self._held.append(batch)
            self._held_rows += len(batch)
            if self._held_rows > self.max_rows:
                raise DataError(f"{self.where}: over='pass' holds {self._held_rows:,} rows, "
                                f"over max_rows={self.max_rows:,}")
        if batch.end_of_pass or (self.window_rows is not None
                                 and self._held_rows >= self.window_rows):
            return self._emit(batch)
        return None

    def _emit(self, last: Batch) -> OperatorOutput:
        import pyarrow as pa

        held, self._held, self._held_rows = self._held, [], 0
        tables = [_arrow(b) for b in held]
        try:
            table = pa.concat_tables(tables, promote_options="permissive") if tables else \
                pa.table({})
            result = self._run(table) if tables else None
        finally:
            for b in held:
                b.release()
        if result is None:
            return None
        return Batch(None, last.stream, last.position, arrow=result,
                     end_of_pass=last.end_of_pass)

    async def flush(self) -> OperatorOutput:
        if self.over == "pass" and self._held:
            return self._emit(self._held[-1])
        return None

    async def close(self) -> None:
        # held batches were never emitted: their tickets stay open, so the checkpoint stays
        # before the pass and the next run reads it again
        self._held, self._held_rows = [], 0
