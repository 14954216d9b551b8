"""Dry runs: what ``Pipeline.preview`` learns, and the stages of its preview run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from etlsync.core.batch import Batch, Row
from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.schema import Schema
from etlsync.core.stages import Sink, StageContext


@dataclass
class Preview:
    """What a dry run learnt: where it would resume, the schemas and the first rows."""

    resume_from: Any = None
    source_schemas: dict[str, Schema] = field(default_factory=dict)
    output_schemas: dict[str, Schema] = field(default_factory=dict)
    target_schemas: dict[str, Schema | None] = field(default_factory=dict)
    """By sink stage name; ``None``: the target does not exist (yet)."""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class FixedCheckpoint(CheckpointStore):
    """The checkpoint a dry run starts from; commits go nowhere."""

    def __init__(self, checkpoint: Checkpoint | None) -> None:
        self.checkpoint = checkpoint

    async def load(self, pipeline: str) -> Checkpoint | None:
        return self.checkpoint

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        return None


class PreviewSink(Sink):
    """Keeps the first ``limit`` rows and then stops the preview run."""

    name = "preview"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.rows: list[Row] = []
        self.stop: Callable[[], None] | None = None

    async def open(self, context: StageContext) -> None:
        return None

    async def write(self, batch: Batch) -> None:
        if len(self.rows) < self.limit and len(batch):
            self.rows.extend(batch.rows[:self.limit - len(self.rows)])
        if len(self.rows) >= self.limit and self.stop is not None:
            self.stop()


def output_schema(operators: list[Any], schema: Schema) -> Schema | None:
    """``schema`` after every operator, or ``None`` when one cannot say."""
    for op in operators:
        out = op.transform_schema(schema)
        if out is None:
            return None
        schema = out
    return schema
