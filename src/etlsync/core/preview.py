"""Dry runs: a pipeline run in preview mode, writing nothing (``Pipeline.preview``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from etlsync.core.batch import Batch, Row
from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.schema import Schema
from etlsync.core.stages import Sink, StageContext, stage_name

if TYPE_CHECKING:
    from etlsync.core.pipeline import Pipeline


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


class _Fixed(CheckpointStore):
    """The checkpoint a dry run starts from; commits go nowhere."""

    def __init__(self, checkpoint: Checkpoint | None) -> None:
        self.checkpoint = checkpoint

    async def load(self, pipeline: str) -> Checkpoint | None:
        return self.checkpoint

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        return None


class _Collect(Sink):
    """Keeps the first ``limit`` rows and then stops the preview run."""

    name = "preview"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.rows: list[Row] = []
        self.pipeline: Pipeline | None = None

    async def open(self, context: StageContext) -> None:
        return None

    async def write(self, batch: Batch) -> None:
        if len(self.rows) < self.limit and len(batch):
            self.rows.extend(batch.rows[:self.limit - len(self.rows)])
        if len(self.rows) >= self.limit and self.pipeline is not None:
            self.pipeline.stop()


def output_schema(operators: list[Any], schema: Schema) -> Schema | None:
    """``schema`` after every operator, or ``None`` when one cannot say."""
    for op in operators:
        out = op.transform_schema(schema)
        if out is None:
            return None
        schema = out
    return schema


async def preview_pipeline(pipeline: Pipeline, limit: int) -> Preview:
    """Run ``pipeline``'s source and operators in preview mode (see :class:`Preview`)."""
    from etlsync.core.pipeline import Pipeline

    result = Preview()
    store, _ = pipeline.resolve_checkpoint_store()
    try:
        resume = await store.peek(pipeline.name)
    except Exception as exc:  # noqa: BLE001 - a dry run reports what it cannot learn
        resume = None
        result.notes.append(f"checkpoint unavailable: {type(exc).__name__}: {exc}")
    finally:
        await store.close()
    result.resume_from = pipeline.start_position(resume)
    try:
        result.source_schemas = await pipeline.source.discover()
    except Exception as exc:  # noqa: BLE001
        result.notes.append(f"source schema unavailable: {type(exc).__name__}: {exc}")
    for stream, schema in result.source_schemas.items():
        out = output_schema(pipeline.operators, schema)
        if out is not None:
            result.output_schemas[stream] = out
    for sink in pipeline.sinks:
        key = stage_name(sink)
        try:
            result.target_schemas[key] = await sink.describe()
        except Exception as exc:  # noqa: BLE001
            result.target_schemas[key] = None
            result.notes.append(f"{key}: target schema unavailable: {type(exc).__name__}: {exc}")
    if limit > 0:
        collect = _Collect(limit)
        probe = Pipeline(pipeline.source, pipeline.operators, [collect], name=pipeline.name,
                         checkpoint_store=_Fixed(resume), gc_threshold=None,
                         channel_batches=pipeline.channel_batches,
                         channel_rows=pipeline.channel_rows)
        collect.pipeline = probe
        probe._preview_rows = limit
        await probe.run(handle_signals=False)
        result.rows = collect.rows
    return result
