"""The three stage contracts: Source, Operator, Sink."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Any

from etlsync.core.batch import Batch
from etlsync.core.schema import Schema


class StageContext:
    """What the runner tells a sink when it opens: the pipeline name, a bound logger, and
    the position a write makes committable (for sinks that commit it transactionally)."""

    def __init__(self, pipeline: str, stage: str, log: Any, tracker: Any = None) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.log = log
        self._tracker = tracker
        self.source_exhausted = False
        """Set before sinks close when the source ended by itself and every batch was
        written: a complete pass. False after a stop request or an error, so a sink that
        finishes work at ``close`` (an overwrite swap) knows not to install a partial pass."""

    def position_after(self, batch: Batch) -> tuple[bool, Any]:
        """``(True, position)`` when writing ``batch`` makes ``position`` committable: a
        transactional sink stores it (under :attr:`pipeline`) in the batch's transaction and
        so gets an exactly-once effect. ``(False, None)`` otherwise."""
        if self._tracker is None:
            return False, None
        result: tuple[bool, Any] = self._tracker.position_after(batch.tickets)
        return result


class Source(ABC):
    """Yields batches that carry the position reached after them.

    ``read`` starts from ``position`` (``None``: from the beginning) and is an async
    generator; it is closed (``aclose``) when the pipeline stops, so release connections in
    ``finally`` or ``async with`` blocks inside it. A stop request may cancel it while it
    waits for upstream data; it must not lose data when that happens.
    """

    name: str = ""

    @abstractmethod
    def read(self, position: Any | None) -> AsyncIterator[Batch]:
        """Yield batches from ``position`` on."""

    async def on_commit(self, position: Any) -> None:
        """Called after ``position`` was committed: acknowledge it upstream (replication
        slot feedback, Kafka commit, ...). The default does nothing."""

    async def discover(self) -> dict[str, Schema]:
        """The schemas of the streams this source reads, by stream name, without reading
        data (for ``--dry-run`` and sinks that create tables). Default: unknown (empty)."""
        return {}


OperatorOutput = Batch | Sequence[Batch] | None


class Operator(ABC):
    """Transforms batches. ``process`` may return one batch, several, or none.

    Return batches made with :meth:`Batch.with_rows` (or new ``Batch`` objects, which the
    runner links to the input) so positions follow the data. An operator that keeps a batch
    past ``process`` (windows, aggregates) must ``retain()`` it and ``release()`` it once
    what it held was emitted; ``flush`` emits what is left at the end of the stream.
    """

    name: str = ""

    @abstractmethod
    async def process(self, batch: Batch) -> OperatorOutput:
        """Transform one batch."""

    async def flush(self) -> OperatorOutput:
        """Emit what is held at the end of the stream. The default holds nothing."""
        return None


class Sink(ABC):
    """Writes batches; ``write`` returns only when the batch is durable.

    Batches reach ``write`` in source order, one at a time. A sink must not mutate the
    batch: with several sinks every sink gets the same object.
    """

    name: str = ""

    async def open(self, context: StageContext) -> None:
        """Connect and prepare (create tables, ...). Called once before the first write."""

    async def describe(self) -> Schema | None:
        """The target's current schema, if it exists, without writing (for ``--dry-run``)."""
        return None

    @abstractmethod
    async def write(self, batch: Batch) -> None:
        """Make ``batch`` durable, then return."""

    async def close(self) -> None:
        """Release resources. Called once, also after errors."""


def stage_name(stage: object) -> str:
    """The stage's ``name`` attribute, or its class name."""
    return getattr(stage, "name", "") or type(stage).__name__
