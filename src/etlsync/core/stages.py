"""The three stage contracts: Source, Operator, Sink."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Any

from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability
from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.schema import Schema
from etlsync.core.tracker import CheckpointTracker


class StageContext:
    """What the runner tells a sink when it opens.

    :param pipeline: the pipeline's name (checkpoints are kept under it).
    :param stage: this stage's unique name in the pipeline.
    :param log: a logger bound to the pipeline and stage.
    :param resume: the checkpoint this run resumed from (``None``: a first run).
    :param owns_checkpoint: this sink's store is the pipeline's checkpoint store: the sink
        writes :meth:`checkpoint_for` in each batch's transaction and nobody else writes it.
    """

    def __init__(self, pipeline: str, stage: str, log: Any,
                 tracker: CheckpointTracker | None = None, *,
                 resume: Checkpoint | None = None, owns_checkpoint: bool = False) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.log = log
        self.resume = resume
        self.owns_checkpoint = owns_checkpoint
        self._tracker = tracker
        self.forced: Checkpoint | None = None
        """Set by the runner around a checkpoint-only write (an empty batch)."""
        self.offered: Checkpoint | None = None
        """The last checkpoint :meth:`checkpoint_for` handed out (the runner's bookkeeping)."""
        self.dead_letter: Any = None
        """Operators: the pipeline's :class:`~etlsync.resilience.DeadLetterSink`, when an
        error policy set one (rows an operator rejects may go there)."""
        self.preview = False
        """A dry run (:meth:`Pipeline.preview`): write nothing anywhere (dead letters
        included)."""

    @property
    def resuming_pass(self) -> bool:
        """The run continues a pass an earlier run left open (a crash mid-pass): an
        overwrite target that owns the checkpoint keeps its staging table."""
        return self.owns_checkpoint and self.resume is not None and self.resume.pass_open

    def checkpoint_for(self, batch: Batch) -> Checkpoint | None:
        """The checkpoint to store in the same transaction as ``batch`` (write it even when
        the batch is empty), or ``None``: nothing to store with this batch. Only the sink
        that owns the pipeline's checkpoint gets one."""
        if not self.owns_checkpoint or self._tracker is None:
            return None
        found = self.forced if self.forced is not None else \
            self._tracker.checkpoint_after(batch.tickets)
        if found is not None:
            self.offered = found
        return found


class Source(ABC):
    """Yields batches that carry the position reached after them.

    ``read`` starts from ``position`` (``None``: from the beginning) and is an async
    generator; it is closed (``aclose``) when the pipeline stops, so release connections in
    ``finally`` or ``async with`` blocks inside it. A stop request may cancel it while it
    waits for upstream data; it must not lose data when that happens.
    """

    name: str = ""
    capabilities: frozenset[Capability] = frozenset()

    @abstractmethod
    def read(self, position: Any | None) -> AsyncIterator[Batch]:
        """Yield batches from ``position`` on."""

    def next_pass(self, position: Any) -> Any | None:
        """``PASSES`` sources: where the pass after one that ended at ``position`` starts
        (the runner calls it when the committed checkpoint closed a pass). The default
        starts over from the beginning (a full refresh)."""
        return None

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
    runner links to the input) so positions follow the data. An operator that keeps data
    past ``process`` either declares ``STATEFUL`` and keeps it in a state the runner stores
    with each checkpoint (:meth:`snapshot_state`), or ``retain()`` s the batches it holds and
    ``release()`` s them once emitted. ``flush`` emits what is left at the end of the stream.
    ``open`` and ``close`` bracket a run (connections of lookup joins, dead-letter sinks).
    """

    name: str = ""
    capabilities: frozenset[Capability] = frozenset()

    async def open(self, context: StageContext) -> None:
        """Called once per run before the first batch (``context.tracker`` is ``None`` for
        operators; ``context.dead_letter`` is the pipeline's dead-letter sink, if any)."""

    async def close(self) -> None:
        """Called once per run after the last batch, also after errors."""

    @abstractmethod
    async def process(self, batch: Batch) -> OperatorOutput:
        """Transform one batch."""

    async def flush(self) -> OperatorOutput:
        """Emit what is held at the end of the stream. The default holds nothing. A
        ``STATEFUL`` operator is not flushed when the pipeline stops on request (its state is
        in the checkpoint and the next run continues it)."""
        return None

    def transform_schema(self, schema: Schema) -> Schema | None:
        """The schema of this operator's output for input of ``schema``, or ``None`` when it
        cannot say without data (dry runs show what is known)."""
        return None

    def snapshot_state(self) -> Any:
        """``STATEFUL`` operators: the state after the last batch, as a JSON-able value
        (:mod:`etlsync.core.codec` types); the runner stores it with the checkpoint."""
        return None

    def restore_state(self, state: Any) -> None:
        """``STATEFUL`` operators: continue from a state :meth:`snapshot_state` returned;
        ``None``: start empty. Called at the start of every run."""


class Sink(ABC):
    """Writes batches; ``write`` returns only when the batch is durable.

    Batches reach ``write`` in source order, one at a time. A sink must not mutate the
    batch: with several sinks every sink gets the same object. An empty batch still counts:
    a ``TRANSACTIONAL`` sink stores ``context.checkpoint_for(batch)`` for it, and one with
    ``end_of_pass`` ends the pass.
    """

    name: str = ""
    capabilities: frozenset[Capability] = frozenset()

    async def open(self, context: StageContext) -> None:
        """Connect and prepare (create tables, ...). Called once before the first write."""

    async def describe(self) -> Schema | None:
        """The target's current schema, if it exists, without writing (for ``--dry-run``)."""
        return None

    def checkpoint_store(self) -> CheckpointStore | None:
        """``TRANSACTIONAL`` sinks: a new store reading the checkpoint this sink writes."""
        return None

    @abstractmethod
    async def write(self, batch: Batch) -> None:
        """Make ``batch`` durable, then return."""

    async def close(self) -> None:
        """Release resources. Called once, also after errors."""


def stage_name(stage: object) -> str:
    """The stage's ``name`` attribute, or its class name."""
    return getattr(stage, "name", "") or type(stage).__name__
