"""Batches: the unit that crosses channels, carrying rows, change kinds and positions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from functools import lru_cache, partial
from operator import itemgetter
from typing import Any

from etlsync.core.schema import Schema
from etlsync.core.tracker import Ticket

Row = dict[str, Any]
"""One record: column name to value."""


@lru_cache(maxsize=256)
def dict_maker(columns: tuple[str, ...]) -> Callable[[Sequence[Any]], Row]:
    """A function from a record of ``len(columns)`` values to its row dict: a dict display
    compiled for ``columns`` (sized once, no key/value pairs built: about a third cheaper
    than ``dict(zip(...))``). A record of another length raises ``ValueError``.

    The names are embedded as string literals (``repr`` of a ``str`` is always a valid
    literal of the same string), so no name can inject code.
    """
    if len(set(columns)) != len(columns):
        raise ValueError(f"duplicate column names in {list(columns)}")
    if not columns:
        return _empty_row
    items = ", ".join(f"{str(c)!r}: r[{i}]" for i, c in enumerate(columns))
    code = f"lambda r: {{{items}}} if len(r) == {len(columns)} else bad(r)"
    made: Callable[[Sequence[Any]], Row] = eval(code, {"__builtins__": {"len": len},
                                                       "bad": partial(_bad_width, columns)})
    return made


def arrow_records(table: Any) -> list[Sequence[Any]]:
    """The rows of a ``pyarrow.Table`` as value tuples in column order (arrow's own
    conversion to Python values: ``int``, ``float``, ``Decimal``, ``datetime``, ...)."""
    columns = [c.to_pylist() for c in table.columns]
    if not columns:
        return [()] * int(table.num_rows)
    return list(zip(*columns, strict=True))


def _empty_row(record: Sequence[Any]) -> Row:
    if record:
        _bad_width((), record)
    return {}


def _bad_width(columns: tuple[str, ...], record: Sequence[Any]) -> Row:
    raise ValueError(f"a record has {len(record)} values for {len(columns)} columns "
                     f"{list(columns)}: {list(record)[:10]!r}")


class Op(StrEnum):
    """The kind of change a row describes. Snapshot and file rows are ``INSERT``."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    TRUNCATE = "truncate"


class Batch:
    """Rows from one stream, with the source position reached after them.

    A batch is made in one of three forms and can be read in any of them; a conversion is
    cached and never destroys the form it came from, so what one stage reads does not change
    what the next one sees. *Dict form* (:attr:`rows`): one dict per row. *Record form*
    (:attr:`columns` + :attr:`records`): one sequence of values per row, in the order of
    ``columns``, as readers produce them. *Arrow form* (:attr:`arrow`): a ``pyarrow.Table``
    (see docs/concepts/pipeline.md). :meth:`view` gives value tuples in any column order,
    whatever the form. Stages must not mutate a batch they did not make.

    :param rows: the records, as dicts (or ``None`` with ``columns`` and ``records``).
    :param stream: the stream (table, collection, topic, file) the rows belong to.
    :param position: the source position *after* this batch; ``None`` when the batch ends
        inside an upstream transaction and must not be a resume point on its own.
    :param ops: one :class:`Op` per row for change data; ``None`` means all inserts.
    :param before: the old row image per row for updates and deletes, where known.
    :param schema: the stream's schema when the source knows it.
    :param columns: with ``records``: the column names of every record.
    :param records: with ``columns``: one sequence of ``len(columns)`` values per row.
    :param arrow: instead of rows or records: a ``pyarrow.Table`` (``columns`` are its names).
    :param end_of_pass: the last batch of a complete pass of a finite source (a kernel
        signal: an overwrite sink installs the new data set here).
    """

    __slots__ = ("_arrow", "_records", "_rows", "_views", "before", "columns", "end_of_pass",
                 "ops", "position", "schema", "stream", "tickets")

    def __init__(
        self,
        rows: list[Row] | None = None,
        stream: str = "",
        position: Any = None,
        ops: list[Op] | None = None,
        before: list[Row | None] | None = None,
        schema: Schema | None = None,
        tickets: tuple[Ticket, ...] = (),
        *,
        columns: Sequence[str] | None = None,
        records: list[Sequence[Any]] | None = None,
        arrow: Any = None,
        end_of_pass: bool = False,
    ) -> None:
        self._arrow = arrow
        if arrow is not None:
            if rows is not None or records is not None or columns is not None:
                raise ValueError("Batch takes an arrow table alone, without rows or records")
            names = tuple(arrow.column_names)
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate column names in {list(names)}")
            self.columns: tuple[str, ...] | None = names
            self._records: list[Sequence[Any]] | None = None
        elif rows is None:
            if columns is None or records is None:
                raise ValueError("Batch needs rows, or columns and records")
            self.columns = tuple(columns)
            self._records = records
        elif records is not None or columns is not None:
            raise ValueError("Batch takes rows or columns and records, not both")
        else:
            self.columns = self._records = None
        self._rows = rows
        self._views: dict[tuple[str, ...], list[tuple[Any, ...]]] | None = None
        self.stream = stream
        self.position = position
        self.ops = ops
        self.before = before
        self.schema = schema
        self.tickets = tickets
        self.end_of_pass = end_of_pass

    @classmethod
    def from_records(cls, columns: Sequence[str], records: list[Sequence[Any]], *,
                     stream: str = "", position: Any = None, ops: list[Op] | None = None,
                     before: list[Row | None] | None = None,
                     schema: Schema | None = None) -> Batch:
        """A record-form batch: ``records[i][j]`` is row ``i``'s value of ``columns[j]``."""
        return cls(None, stream, position, ops, before, schema, columns=columns, records=records)

    @classmethod
    def from_arrow(cls, table: Any, *, stream: str = "", position: Any = None,
                   ops: list[Op] | None = None, before: list[Row | None] | None = None,
                   schema: Schema | None = None) -> Batch:
        """An arrow-form batch of a ``pyarrow.Table`` (or ``RecordBatch``)."""
        return cls(None, stream, position, ops, before, schema, arrow=table)

    @property
    def form(self) -> str:
        """The form the batch was made in: ``"arrow"``, ``"records"`` or ``"rows"``."""
        if self._arrow is not None:
            return "arrow"
        return "rows" if self.columns is None else "records"

    @property
    def arrow(self) -> Any:
        """The ``pyarrow.Table`` of an arrow-form batch, else ``None``."""
        return self._arrow

    @property
    def records(self) -> list[Sequence[Any]] | None:
        """The records (value sequences in the order of :attr:`columns`) of a record-form or
        arrow-form batch (an arrow table is converted once and cached), else ``None``."""
        records = self._records
        if records is None and self._arrow is not None:
            records = self._records = arrow_records(self._arrow)
        return records

    @property
    def rows(self) -> list[Row]:
        """The rows as dicts (built once from the records and cached)."""
        rows = self._rows
        if rows is None:
            columns, records = self.columns, self.records
            assert columns is not None and records is not None
            rows = self._rows = list(map(dict_maker(columns), records))
        return rows

    def view(self, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """Each row's values at ``columns``, in that order (``None`` where a row lacks one):
        the column view sinks bind by position. Cached per column order."""
        key = tuple(columns)
        views = self._views
        if views is not None and key in views:
            return views[key]
        records, own = self._records if self._arrow is None else self.records, self.columns
        if records is not None and own is not None:
            if key == own:
                out = records if records and type(records[0]) is tuple else list(map(tuple, records))
            else:
                index = {c: i for i, c in enumerate(own)}
                if key and all(c in index for c in key):
                    pick = [index[c] for c in key]
                    out = ([(r[pick[0]],) for r in records] if len(pick) == 1
                           else list(map(itemgetter(*pick), records)))
                else:
                    out = [tuple(r[index[c]] if c in index else None for c in key)
                           for r in records]
        else:
            rows = self.rows
            if not key:
                out = [()] * len(rows)
            elif len(key) == 1:
                k = key[0]
                out = [(r.get(k),) for r in rows]
            else:
                getter = itemgetter(*key)
                try:
                    out = list(map(getter, rows))
                except KeyError:
                    out = [tuple(r.get(c) for c in key) for r in rows]
        if views is None:
            views = self._views = {}
        views[key] = out  # type: ignore[assignment]
        return out  # type: ignore[return-value]

    def column_names(self) -> list[str]:
        """The columns of the batch: its own for record and arrow form, else the union of the
        rows' keys in first-seen order."""
        if self.columns is not None:
            return list(self.columns)
        seen: dict[str, None] = {}
        rows = self.rows
        if rows:
            first = rows[0]
            if all(len(r) == len(first) and r.keys() == first.keys() for r in rows):
                return list(first)
        for r in rows:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def __len__(self) -> int:
        table = self._arrow
        if table is not None:
            return int(table.num_rows)
        records = self._records
        if records is not None:
            return len(records)
        return len(self.rows)

    def __repr__(self) -> str:
        table = self._arrow
        form = (f"arrow={table.num_rows}x{self.columns!r}" if table is not None
                else f"records={len(self._records)}x{self.columns!r}"
                if self._records is not None else f"rows={self._rows!r}")
        eop = ", end_of_pass=True" if self.end_of_pass else ""
        return (f"Batch({form}, stream={self.stream!r}, position={self.position!r}, "
                f"ops={self.ops!r}{eop})")

    def with_rows(
        self,
        rows: list[Row],
        ops: list[Op] | None = None,
        before: list[Row | None] | None = None,
        schema: Schema | None = None,
    ) -> Batch:
        """A batch derived from this one: same stream, position, tickets and pass signal.

        A change batch keeps its ``ops`` and ``before`` when the row count is unchanged (a
        row-by-row map); an operator that drops or adds rows of a change batch must pass
        ``ops`` (and ``before``) for the new rows, or the change kinds would be lost.
        """
        ops, before = self._derived_ops(len(rows), ops, before)
        return Batch(rows, self.stream, self.position, ops, before,
                     schema if schema is not None else self.schema, self.tickets,
                     end_of_pass=self.end_of_pass)

    def with_records(
        self,
        columns: Sequence[str],
        records: list[Sequence[Any]],
        ops: list[Op] | None = None,
        before: list[Row | None] | None = None,
        schema: Schema | None = None,
    ) -> Batch:
        """Like :meth:`with_rows`, for a derived batch in record form."""
        ops, before = self._derived_ops(len(records), ops, before)
        return Batch(None, self.stream, self.position, ops, before,
                     schema if schema is not None else self.schema, self.tickets,
                     columns=columns, records=records, end_of_pass=self.end_of_pass)

    def with_arrow(
        self,
        table: Any,
        ops: list[Op] | None = None,
        before: list[Row | None] | None = None,
        schema: Schema | None = None,
    ) -> Batch:
        """Like :meth:`with_rows`, for a derived batch in arrow form."""
        ops, before = self._derived_ops(int(table.num_rows), ops, before)
        return Batch(None, self.stream, self.position, ops, before,
                     schema if schema is not None else self.schema, self.tickets, arrow=table,
                     end_of_pass=self.end_of_pass)

    def _derived_ops(self, n: int, ops: list[Op] | None, before: list[Row | None] | None
                     ) -> tuple[list[Op] | None, list[Row | None] | None]:
        if ops is None and self.ops is not None:
            if n != len(self):
                raise ValueError(
                    f"stream {self.stream!r}: with_rows changed the row count of a change batch "
                    f"({len(self)} -> {n}) without passing ops"
                )
            return self.ops, self.before if before is None else before
        return ops, before

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """One batch holding the rows of several, carrying all their tickets (for buffering
        operators). The position is the last batch's. Record-form batches with the same
        columns stay in record form; arrow-form batches with the same schema stay in arrow
        form."""
        if not batches:
            raise ValueError("Batch.concat needs at least one batch")
        any_ops = any(b.ops is not None for b in batches)
        ops: list[Op] | None = [] if any_ops else None
        tickets: dict[int, Ticket] = {}
        for b in batches:
            if ops is not None:
                ops.extend(b.ops if b.ops is not None else [Op.INSERT] * len(b))
            for t in b.tickets:
                tickets[id(t)] = t
        last = batches[-1]
        tables = [b.arrow for b in batches]
        if tables[0] is not None and all(
                t is not None and t.schema.equals(tables[0].schema) for t in tables):
            import pyarrow as pa  # the batches are arrow tables: pyarrow is there

            return Batch(None, last.stream, last.position, ops, None, last.schema,
                         tuple(tickets.values()),
                         arrow=pa.concat_tables([pa.table(t) for t in tables]),
                         end_of_pass=last.end_of_pass)
        columns = batches[0].columns
        if columns is not None and all(b.columns == columns for b in batches):
            records: list[Sequence[Any]] = []
            for b in batches:
                assert b.records is not None
                records.extend(b.records)
            return Batch(None, last.stream, last.position, ops, None, last.schema,
                         tuple(tickets.values()), columns=columns, records=records,
                         end_of_pass=last.end_of_pass)
        rows: list[Row] = []
        for b in batches:
            rows.extend(b.rows)
        return Batch(rows, last.stream, last.position, ops, None, last.schema,
                     tuple(tickets.values()), end_of_pass=last.end_of_pass)

    def op_at(self, index: int) -> Op:
        return Op.INSERT if self.ops is None else self.ops[index]

    def iter_changes(self) -> Iterable[tuple[Op, Row]]:
        """Yield ``(op, row)`` pairs; all ``INSERT`` when the batch has no ops."""
        if self.ops is None:
            return ((Op.INSERT, r) for r in self.rows)
        return zip(self.ops, self.rows, strict=True)

    def retain(self, n: int = 1) -> None:
        """Hold this batch's tickets: for operators that keep a batch past ``process``.

        The checkpoint cannot pass a retained batch until :meth:`release` is called.
        """
        for t in self.tickets:
            t.retain(n)

    def release(self, n: int = 1) -> None:
        """Give up a hold taken with :meth:`retain` (the runner releases its own holds)."""
        for t in self.tickets:
            t.release(n)
