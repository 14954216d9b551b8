"""Batches: the unit that crosses channels, carrying rows, change kinds and positions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from functools import lru_cache, partial
from typing import Any

from etlsync.core.schema import Schema

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


class Ticket:
    """Tracks one source batch until every sink has made all data derived from it durable.

    The runner creates one ticket per source batch. Every live batch derived from it holds
    a reference; when the last reference is released the ticket is done and the checkpoint
    may advance past its position. Users never create tickets.
    """

    __slots__ = ("_on_done", "position", "refs", "seq")

    def __init__(self, seq: int, position: Any, on_done: Any) -> None:
        self.seq = seq
        self.position = position
        self.refs = 0
        self._on_done = on_done

    def retain(self, n: int = 1) -> None:
        self.refs += n

    def release(self, n: int = 1) -> None:
        self.refs -= n
        if self.refs < 0:
            raise RuntimeError(f"ticket {self.seq} released more often than retained")
        if self.refs == 0:
            self._on_done(self)

    def __repr__(self) -> str:
        return f"Ticket(seq={self.seq}, position={self.position!r}, refs={self.refs})"


class TicketHold:
    """Tickets a sink keeps open after ``write`` returned, so the checkpoint cannot pass the
    held batches (e.g. an overwrite target until the new pass is installed)."""

    __slots__ = ("tickets",)

    def __init__(self) -> None:
        self.tickets: list[Ticket] = []

    def add(self, batch: Batch) -> None:
        """Hold ``batch``'s tickets beyond the runner's own release."""
        batch.retain()
        self.tickets.extend(batch.tickets)

    def release(self) -> None:
        """Give the held tickets back: the checkpoint may advance past them."""
        held, self.tickets = self.tickets, []
        for t in held:
            t.release()

    def clear(self) -> None:
        """Forget the held tickets without releasing them (after a failure: nothing past
        them may be committed)."""
        self.tickets = []


class Batch:
    """Rows from one stream, with the source position reached after them.

    A batch holds its rows in one of three forms. *Dict form* (``rows``): one dict per row.
    *Record form* (``columns`` + ``records``): one sequence of values per row, in the order
    of ``columns``, as readers produce them; the dicts are built only when someone reads
    :attr:`rows` (an operator, a sink without a record path). Sinks that bind values by
    position (SQLite, COPY) check ``batch.records is not None`` and skip the dicts.
    *Arrow form* (``columns`` + ``arrow``): a ``pyarrow.Table`` (see
    docs/concepts/pipeline.md); stages that work on whole columns in C read :attr:`arrow`,
    every other stage reads :attr:`records` or :attr:`rows` as before, which converts the
    table once (and ends the arrow form).

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
    """

    __slots__ = ("_arrow", "_records", "_rows", "before", "columns", "ops", "position",
                 "schema", "stream", "tickets")

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
        self.stream = stream
        self.position = position
        self.ops = ops
        self.before = before
        self.schema = schema
        self.tickets = tickets

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
    def arrow(self) -> Any:
        """The ``pyarrow.Table`` of an arrow-form batch, else ``None``."""
        return self._arrow

    @property
    def records(self) -> list[Sequence[Any]] | None:
        """The records (value tuples in the order of :attr:`columns`) of a record-form or
        arrow-form batch (an arrow table converts once, which ends the arrow form), else
        ``None`` (dict form)."""
        records = self._records
        if records is None:
            table = self._arrow
            if table is not None:
                records = arrow_records(table)
                self._records = records
                self._arrow = None
            else:  # dict form, or converted meanwhile by another thread
                return self._records
        return records

    @property
    def rows(self) -> list[Row]:
        """The rows as dicts (built from the records on first access, which then ends the
        record or arrow form: ``records``, ``arrow`` and ``columns`` become ``None``)."""
        rows = self._rows
        if rows is None:
            columns, records = self.columns, self.records
            if records is None or columns is None:  # built meanwhile by another thread
                rows = self._rows
                assert rows is not None
                return rows
            rows = list(map(dict_maker(columns), records))
            self._rows = rows
            self._records = self.columns = None
        return rows

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
        return (f"Batch({form}, stream={self.stream!r}, position={self.position!r}, "
                f"ops={self.ops!r})")

    def with_rows(
        self,
        rows: list[Row],
        ops: list[Op] | None = None,
        before: list[Row | None] | None = None,
        schema: Schema | None = None,
    ) -> Batch:
        """A batch derived from this one: same stream, position and tickets.

        A change batch keeps its ``ops`` and ``before`` when the row count is unchanged (a
        row-by-row map); an operator that drops or adds rows of a change batch must pass
        ``ops`` (and ``before``) for the new rows, or the change kinds would be lost.
        """
        ops, before = self._derived_ops(len(rows), ops, before)
        return Batch(rows, self.stream, self.position, ops, before,
                     schema if schema is not None else self.schema, self.tickets)

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
                     columns=columns, records=records)

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
                     schema if schema is not None else self.schema, self.tickets, arrow=table)

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
                         arrow=pa.concat_tables([pa.table(t) for t in tables]))
        columns = batches[0].columns
        if columns is not None and all(b.columns == columns for b in batches):
            records: list[Sequence[Any]] = []
            for b in batches:
                assert b.records is not None
                records.extend(b.records)
            return Batch(None, last.stream, last.position, ops, None, last.schema,
                         tuple(tickets.values()), columns=columns, records=records)
        rows: list[Row] = []
        for b in batches:
            rows.extend(b.rows)
        return Batch(rows, last.stream, last.position, ops, None, last.schema,
                     tuple(tickets.values()))

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
