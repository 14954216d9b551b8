"""Tickets and the tracker that decides which checkpoint may be committed.

The runner issues one :class:`Ticket` per source batch. Every live batch derived from it
holds a reference; when the last is released (every sink made it durable, or an operator
dropped it) the ticket is done. The committable checkpoint is that of the highest done
ticket below which every ticket is done.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from etlsync.core.checkpoint import Checkpoint


class Ticket:
    """Tracks one source batch until every sink has made all data derived from it durable.

    ``position`` is ``None`` inside an upstream transaction (not a resume point);
    ``end_of_pass`` marks the last batch of a pass; ``state`` is the stateful operators'
    state right after this batch went through them. ``resume`` is ``False`` for a ticket
    the runner took no state snapshot at (see :class:`~etlsync.core.run.StateInterval`):
    like a ``None`` position, it is not a resume point. Users never create tickets.
    """

    __slots__ = ("_on_done", "end_of_pass", "position", "refs", "resume", "seq", "state")

    def __init__(self, seq: int, position: Any, on_done: Callable[[Ticket], None],
                 end_of_pass: bool = False) -> None:
        self.seq = seq
        self.position = position
        self.end_of_pass = end_of_pass
        self.state: dict[str, Any] | None = None
        self.resume = True
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


class _Holding(Protocol):
    tickets: tuple[Ticket, ...]

    def retain(self, n: int = 1) -> None: ...


class TicketHold:
    """Tickets a sink keeps after ``write`` returned, so the checkpoint cannot pass the held
    batches (an overwrite target that does not own the checkpoint, until its swap)."""

    __slots__ = ("tickets",)

    def __init__(self) -> None:
        self.tickets: list[Ticket] = []

    def add(self, batch: _Holding) -> None:
        """Hold ``batch``'s tickets beyond the runner's own release."""
        batch.retain()
        self.tickets.extend(batch.tickets)

    def release(self) -> None:
        """Give the held tickets back: the checkpoint may advance past them."""
        held, self.tickets = self.tickets, []
        for t in held:
            t.release()

    def clear(self) -> None:
        """Forget the held tickets without releasing them (after a failure)."""
        self.tickets = []


def _advance(current: Checkpoint | None, t: Ticket) -> Checkpoint | None:
    """The committable checkpoint once ``t`` (the next ticket in order) is done."""
    if t.position is not None:
        return Checkpoint(t.position, not t.end_of_pass, t.state, t.seq) if t.resume else current
    if t.end_of_pass and current is not None:  # the runner's marker closing a pass
        return Checkpoint(current.position, False, current.state, t.seq)
    return current


class CheckpointTracker:
    """Issues tickets in source order and finds the committable checkpoint."""

    def __init__(self, on_advance: Callable[[], None] | None = None,
                 start: Checkpoint | None = None) -> None:
        """:param start: the checkpoint the run resumed from (a pass closed without a new
        position closes it)."""
        self._on_advance = on_advance
        self._next_seq = 0
        self._frontier = -1
        self._done: list[int] = []
        self._done_set: set[int] = set()
        self._deferring = False
        self._deferred: list[Ticket] = []
        self._tickets: dict[int, Ticket] = {}
        self.committable: Checkpoint | None = start
        self._version = 0

    @property
    def version(self) -> int:
        """Grows each time the committable checkpoint changes."""
        return self._version

    @property
    def open_tickets(self) -> int:
        return self._next_seq - 1 - self._frontier

    def issue(self, position: Any, end_of_pass: bool = False) -> Ticket:
        t = Ticket(self._next_seq, position, self._ticket_done, end_of_pass)
        self._tickets[t.seq] = t
        self._next_seq += 1
        return t

    def checkpoint_after(self, tickets: Iterable[Ticket]) -> Checkpoint | None:
        """The checkpoint that becomes committable once the caller releases its hold on
        ``tickets`` (one reference each), or ``None`` if the committable one would not
        change. A transactional sink writes it in the same transaction as the batch."""
        finishing = {t.seq for t in tickets if t.refs == 1}
        if not finishing:
            return None
        found = self.committable
        seq = self._frontier + 1
        while seq in finishing or seq in self._done_set:
            found = _advance(found, self._tickets[seq])
            seq += 1
        if found is None or found is self.committable:
            return None
        return found

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold back 'done' decisions while an operator call runs: a ticket that drops to zero
        references inside the block (an operator releasing batches it held) is done only if
        it still has none at the end, after the runner has retained the operator's outputs."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            pending, self._deferred = self._deferred, []
            seen: set[int] = set()
            for t in pending:
                if t.refs == 0 and t.seq not in seen:
                    seen.add(t.seq)
                    self._ticket_done(t)

    def _ticket_done(self, ticket: Ticket) -> None:
        if self._deferring:
            self._deferred.append(ticket)
            return
        heapq.heappush(self._done, ticket.seq)
        self._done_set.add(ticket.seq)
        before = self.committable
        while self._done and self._done[0] == self._frontier + 1:
            seq = heapq.heappop(self._done)
            self._done_set.discard(seq)
            self._frontier = seq
            self.committable = _advance(self.committable, self._tickets.pop(seq))
        if self.committable is not before:
            self._version += 1
            if self._on_advance is not None:
                self._on_advance()
