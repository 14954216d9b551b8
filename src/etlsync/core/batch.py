"""Batches: the unit that crosses channels, carrying rows, change kinds and positions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from etlsync.core.schema import Schema

Row = dict[str, Any]
"""One record: column name to value."""


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


@dataclass(slots=True)
class Batch:
    """Rows from one stream, with the source position reached after them.

    :param rows: the records, as dicts.
    :param stream: the stream (table, collection, topic, file) the rows belong to.
    :param position: the source position *after* this batch; ``None`` when the batch ends
        inside an upstream transaction and must not be a resume point on its own.
    :param ops: one :class:`Op` per row for change data; ``None`` means all inserts.
    :param before: the old row image per row for updates and deletes, where known.
    :param schema: the stream's schema when the source knows it.
    """

    rows: list[Row]
    stream: str = ""
    position: Any = None
    ops: list[Op] | None = None
    before: list[Row | None] | None = None
    schema: Schema | None = None
    tickets: tuple[Ticket, ...] = field(default=(), repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

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
        if ops is None and self.ops is not None:
            if len(rows) != len(self.rows):
                raise ValueError(
                    f"stream {self.stream!r}: with_rows changed the row count of a change batch "
                    f"({len(self.rows)} -> {len(rows)}) without passing ops"
                )
            ops = self.ops
            before = self.before if before is None else before
        return Batch(
            rows,
            stream=self.stream,
            position=self.position,
            ops=ops,
            before=before,
            schema=schema if schema is not None else self.schema,
            tickets=self.tickets,
        )

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """One batch holding the rows of several, carrying all their tickets (for buffering
        operators). The position is the last batch's."""
        if not batches:
            raise ValueError("Batch.concat needs at least one batch")
        rows: list[Row] = []
        any_ops = any(b.ops is not None for b in batches)
        ops: list[Op] | None = [] if any_ops else None
        tickets: dict[int, Ticket] = {}
        for b in batches:
            rows.extend(b.rows)
            if ops is not None:
                ops.extend(b.ops if b.ops is not None else [Op.INSERT] * len(b.rows))
            for t in b.tickets:
                tickets[id(t)] = t
        last = batches[-1]
        return Batch(
            rows,
            stream=last.stream,
            position=last.position,
            ops=ops,
            schema=last.schema,
            tickets=tuple(tickets.values()),
        )

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
