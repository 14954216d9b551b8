"""Stages for testing your own stages: a memory source and a collecting sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Annotated, Any, ClassVar

from msgspec import Meta

from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.stages import Sink, Source, StageContext
from etlsync.manifest import Kind, Manifest, Options, StageType


class MemorySource(Source):
    """Yields ``rows`` in batches of ``batch_size``, then an empty batch ending the pass
    (``PASSES``). The position after a batch is the number of rows consumed, so a run resumed
    inside a pass skips what was committed; after a complete pass the next run starts over.

    :param follow: after the rows, keep waiting (like a CDC source) until stopped.
    :param record_form: yield record-form batches (``Batch.from_records``, columns of the
        first row of each batch) where every row of the batch has those keys in that order,
        as file and database readers do; to test a sink's record path.
    """

    def __init__(self, rows: Sequence[Row] | Iterable[Row], batch_size: int = 1000, *,
                 stream: str = "memory", follow: bool = False, name: str = "memory",
                 record_form: bool = False) -> None:
        self.rows = rows if isinstance(rows, Sequence) else list(rows)
        self.record_form = record_form
        self.batch_size = batch_size
        self.stream = stream
        self.follow = follow
        self.name = name
        self.committed: list[Any] = []
        if not follow:
            self.capabilities = frozenset({Capability.PASSES})

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        start = int(position or 0)
        rows, size = self.rows, self.batch_size
        for i in range(start, len(rows), size):
            chunk = list(rows[i:i + size])
            columns = list(chunk[0]) if chunk else []
            if self.record_form and all(list(r) == columns for r in chunk):
                yield Batch.from_records(columns, [tuple(r.values()) for r in chunk],
                                         stream=self.stream, position=i + len(chunk))
            else:
                yield Batch(chunk, stream=self.stream, position=i + len(chunk))
        while self.follow:
            await asyncio.sleep(3600)
        yield Batch([], stream=self.stream, position=max(start, len(rows)), end_of_pass=True)

    async def on_commit(self, position: Any) -> None:
        self.committed.append(position)


class CollectingSink(Sink):
    """Keeps every written batch in memory; ``rows`` lists all rows written, in order.
    Empty batches that only end a pass are counted in ``ends_of_pass``, not kept.

    :param delay: seconds to wait in each write (a slow sink).
    :param fail_on: a callable given each batch; raise from it to inject failures.
    """

    def __init__(self, name: str = "collect", *, delay: float = 0.0,
                 fail_on: Any = None) -> None:
        self.name = name
        self.delay = delay
        self.fail_on = fail_on
        self.batches: list[Batch] = []
        self.ends_of_pass = 0
        self.opened = False
        self.closed = False

    async def open(self, context: StageContext) -> None:
        self.opened = True
        self.context = context

    async def write(self, batch: Batch) -> None:
        if self.fail_on is not None:
            self.fail_on(batch)
        if self.delay:
            await asyncio.sleep(self.delay)
        if batch.end_of_pass:
            self.ends_of_pass += 1
            if not len(batch):
                return
        self.batches.append(batch)

    async def close(self) -> None:
        self.closed = True

    @property
    def rows(self) -> list[Row]:
        return [r for b in self.batches for r in b.rows]


# -- the manifest of these stages (job files: ``type: memory`` / ``type: collect``) ---------

class MemorySourceOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("rows",)

    rows: Annotated[list[dict[str, Any]], Meta(description="The rows")]
    batch_size: Annotated[int, Meta(ge=1, description="Rows per batch")] = 1000
    stream: Annotated[str, Meta(description="Stream name")] = "memory"
    follow: Annotated[bool, Meta(description="Keep waiting after the rows (until stopped)")] = \
        False
    record_form: Annotated[bool, Meta(description="Yield record-form batches")] = False


class CollectingSinkOptions(Options, kw_only=True):
    delay: Annotated[float, Meta(ge=0, description="Seconds each write waits")] = 0.0


class NoOptions(Options, kw_only=True):
    pass


MANIFEST = Manifest(
    family="memory",
    summary="In-memory stages for tests, examples and checkpoints that need no resume",
    stages=(
        StageType(Kind.SOURCE, "memory", "etlsync.testing:MemorySource", MemorySourceOptions,
                  "Rows given in the job file", frozenset({Capability.PASSES})),
        StageType(Kind.SINK, "collect", "etlsync.testing:CollectingSink", CollectingSinkOptions,
                  "Keeps the rows in memory"),
        StageType(Kind.CHECKPOINT, "memory", "etlsync.core.checkpoint:MemoryCheckpointStore",
                  NoOptions, "Checkpoints in process memory (no resume)"),
        StageType(Kind.DEAD_LETTER, "memory", "etlsync.resilience.deadletter:MemoryDeadLetterSink",
                  NoOptions, "Dead letters in process memory"),
    ),
)
