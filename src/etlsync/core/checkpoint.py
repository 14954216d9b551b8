"""Checkpoints: the record a pipeline resumes from, and the stores that keep it.

The contract (docs/concepts/checkpoints.md):

- A :class:`Checkpoint` is the source position reached, whether a pass of a finite source was
  still open at that point, and the state of stateful operators at that point.
- A :class:`CheckpointStore` loads, commits, resets and closes; ``commit`` is atomic.
- A sink with the ``TRANSACTIONAL`` capability stores the checkpoint in each batch's own
  transaction and hands out the store that reads it (:meth:`Sink.checkpoint_store`). The
  runner then never writes that store itself: every write of that row is the sink's, in order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from etlsync.core.codec import dumps, loads

_ENVELOPE = "etlsync_checkpoint"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a pipeline resumes.

    :param position: the source position after the last batch every sink made durable.
    :param pass_open: the position lies inside a pass of a finite source (a resumed run
        continues the pass; an overwrite target keeps its staging table). ``False`` after
        the end of a pass (the next run starts a new one).
    :param state: stateful operators' state at that position, by operator stage name.
    :param seq: the ticket this checkpoint was taken at (runner-local ordering; not stored).
    """

    position: Any
    pass_open: bool = True
    state: dict[str, Any] | None = None
    seq: int = field(default=-1, compare=False)

    def encode(self) -> bytes:
        """The stored form (lossless JSON, see :mod:`etlsync.core.codec`)."""
        record: dict[str, Any] = {_ENVELOPE: 1, "position": self.position,
                                  "pass_open": self.pass_open}
        if self.state:
            record["state"] = self.state
        return dumps(record)

    @classmethod
    def decode(cls, raw: bytes | str) -> Checkpoint:
        """Read what :meth:`encode` wrote (or a bare position written by etlsync 0.1)."""
        value = loads(raw)
        if isinstance(value, dict) and value.get(_ENVELOPE) == 1:
            return cls(value.get("position"), bool(value.get("pass_open", True)),
                       value.get("state"))
        # etlsync 0.1 stored the bare position, with "pass_complete" inside for passes
        done = isinstance(value, dict) and value.get("pass_complete") is True
        return cls(value, not done)


class CheckpointStore(ABC):
    """Where a pipeline's checkpoint lives between runs.

    Stores reopen lazily after :meth:`close`, so one store object serves many runs.
    ``location`` names the row a store reads (``None``: no durable location); two stores
    with the same location read the same checkpoint, which is how the runner recognises the
    store a transactional sink writes.
    """

    location: str | None = None

    @abstractmethod
    async def load(self, pipeline: str) -> Checkpoint | None:
        """The last committed checkpoint of ``pipeline``, or ``None`` for a first run."""

    @abstractmethod
    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        """Durably and atomically record ``checkpoint`` for ``pipeline``."""

    async def reset(self, pipeline: str) -> None:
        """Forget ``pipeline``'s checkpoint: its next run starts from the beginning."""
        raise NotImplementedError(f"{type(self).__name__} cannot reset a checkpoint")

    async def peek(self, pipeline: str) -> Checkpoint | None:
        """Like :meth:`load`, but never creating anything (for dry runs)."""
        return await self.load(pipeline)

    async def close(self) -> None:
        """Release connections; the store reopens on its next use."""


class MemoryCheckpointStore(CheckpointStore):
    """A store in process memory: for tests and runs that need no resume.

    Checkpoints are encoded and decoded as a durable store would, so what round-trips here
    round-trips everywhere. ``commits`` lists every commit as ``(pipeline, position)``.
    """

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self.commits: list[tuple[str, Any]] = []

    async def load(self, pipeline: str) -> Checkpoint | None:
        raw = self._data.get(pipeline)
        return None if raw is None else Checkpoint.decode(raw)

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        self._data[pipeline] = checkpoint.encode()
        self.commits.append((pipeline, checkpoint.position))

    async def reset(self, pipeline: str) -> None:
        self._data.pop(pipeline, None)
