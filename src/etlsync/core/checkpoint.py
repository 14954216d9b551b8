"""Checkpoint stores and the tracker that decides which position may be committed."""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

from etlsync.core.batch import Ticket
from etlsync.core.codec import dumps, loads


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a pipeline's committed position lives between runs.

    ``commit`` must be atomic: after a crash ``load`` returns the old or the new position,
    never a mix. A store that a transactional sink writes inside its own transaction (the
    exactly-once path) still implements ``commit``; it may be a no-op there.
    """

    async def load(self, pipeline: str) -> Any | None:
        """The last committed position of ``pipeline``, or ``None`` for a first run."""
        ...

    async def commit(self, pipeline: str, position: Any) -> None:
        """Durably record ``position`` as the point to resume ``pipeline`` from."""
        ...


class MemoryCheckpointStore:
    """A store in process memory: for tests and runs that need no resume.

    Positions are encoded and decoded as a durable store would, so what round-trips here
    round-trips everywhere.
    """

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self.commits: list[tuple[str, Any]] = []

    async def load(self, pipeline: str) -> Any | None:
        raw = self._data.get(pipeline)
        return None if raw is None else loads(raw)

    async def commit(self, pipeline: str, position: Any) -> None:
        self._data[pipeline] = dumps(position)
        self.commits.append((pipeline, position))


class CheckpointTracker:
    """Issues tickets in source order and finds the committable position.

    A ticket is done when every batch derived from it was made durable by every sink (or
    dropped by an operator). The committable position is that of the highest done ticket
    below which every ticket is done, skipping tickets whose position is ``None``
    (mid-transaction batches).
    """

    def __init__(self, on_advance: Callable[[], None] | None = None) -> None:
        self._on_advance = on_advance
        self._next_seq = 0
        self._frontier = -1
        self._done: list[int] = []
        self._done_set: set[int] = set()
        self._deferring = False
        self._deferred: list[Ticket] = []
        self._positions: dict[int, Any] = {}
        self.committable: Any = None
        self.has_committable = False
        self._version = 0

    @property
    def version(self) -> int:
        """Grows each time the committable position changes."""
        return self._version

    @property
    def open_tickets(self) -> int:
        return self._next_seq - 1 - self._frontier

    def issue(self, position: Any) -> Ticket:
        t = Ticket(self._next_seq, position, self._ticket_done)
        self._positions[t.seq] = position
        self._next_seq += 1
        return t

    def position_after(self, tickets: Iterable[Ticket]) -> tuple[bool, Any]:
        """The position that becomes committable once the caller releases its hold on
        ``tickets`` (one reference each): ``(True, position)``, or ``(False, None)`` if the
        committable position would not change. Transactional sinks write this position in
        the same transaction as the batch (exactly-once)."""
        finishing = {t.seq for t in tickets if t.refs == 1}
        if not finishing:
            return False, None
        found, position = False, None
        seq = self._frontier + 1
        while seq in finishing or seq in self._done_set:
            p = self._positions.get(seq)
            if p is not None:
                found, position = True, p
            seq += 1
        return found, position

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
        advanced = False
        while self._done and self._done[0] == self._frontier + 1:
            seq = heapq.heappop(self._done)
            self._done_set.discard(seq)
            self._frontier = seq
            pos = self._positions.pop(seq)
            if pos is not None:
                self.committable = pos
                self.has_committable = True
                advanced = True
        if advanced:
            self._version += 1
            if self._on_advance is not None:
                self._on_advance()
