"""The SQLite family: the embedded default source, sink, checkpoint store and dead letters."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import Meta

from etlsync.core.capabilities import Capability
from etlsync.manifest import Kind, Manifest, Options, StageType


class SqlitePath(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("path",)
    paths: ClassVar[tuple[str, ...]] = ("path",)

    path: Annotated[str, Meta(description="The database file")]


class SqliteSourceOptions(SqlitePath, kw_only=True):
    table: Annotated[str | None, Meta(description="The table to read (or query)")] = None
    query: Annotated[str | None, Meta(description="A SELECT to read instead of a table")] = None
    stream: Annotated[str | None, Meta(description="Stream name (default: the table)")] = None
    batch_size: Annotated[int, Meta(ge=1, description="Rows per batch")] = 10_000
    sync_mode: Annotated[Literal["full_refresh", "incremental"], Meta(
        description="full_refresh, or incremental on cursor_field")] = "full_refresh"
    cursor_field: Annotated[str | None, Meta(
        description="Incremental: the column whose values only grow")] = None
    primary_key: Annotated[list[str], Meta(
        description="Tells rows with equal cursor values apart (default: the table's)")] = []
    timeout: Annotated[float, Meta(gt=0, description="Seconds to wait for a locked file")] = 30.0


class SqliteSinkOptions(SqlitePath, kw_only=True):
    table: Annotated[str, Meta(description="The target table (created when absent)")]
    write_mode: Annotated[Literal["append", "overwrite", "upsert"], Meta(
        description="append; overwrite (staging table swapped in at the end of the pass); "
                    "upsert on primary_key")] = "append"
    primary_key: Annotated[list[str], Meta(
        description="Key columns (default: the table's, or the source schema's)")] = []
    conflict: Annotated[Literal["skip", "overwrite", "merge", "fail"], Meta(
        description="Upserts: what a stored key gets")] = "overwrite"
    schema_policy: Annotated[Literal["evolve", "freeze", "discard"], Meta(
        description="Source columns the table lacks: add, fail, or drop")] = "evolve"
    create: Annotated[bool, Meta(description="Create the table when it is missing")] = True
    synchronous: Annotated[Literal["full", "normal", "extra", "off"], Meta(
        description="full survives power loss; normal survives a process crash")] = "full"
    timeout: Annotated[float, Meta(gt=0, description="Seconds to wait for a locked file")] = 30.0
    state_table: Annotated[str, Meta(
        description="Where the pipeline's checkpoint is stored with the rows")] = "_etlsync_state"
    json_batches: Annotated[bool, Meta(
        description="Insert text batches as one JSON array (pays on an idle multi-core "
                    "machine)")] = False


class SqliteCheckpointOptions(SqlitePath, kw_only=True):
    table: Annotated[str, Meta(description="The state table")] = "_etlsync_state"
    timeout: Annotated[float, Meta(gt=0, description="Seconds to wait for a locked file")] = 30.0
    synchronous: Annotated[Literal["full", "normal", "extra", "off"], Meta(
        description="full survives power loss; normal survives a process crash")] = "full"


class SqliteDeadLetterOptions(SqlitePath, kw_only=True):
    table: Annotated[str, Meta(description="The dead-letter table")] = "etlsync_dead_letters"


MANIFEST = Manifest(
    family="sqlite",
    summary="SQLite files: the embedded default target, source and checkpoint store",
    stages=(
        StageType(Kind.SOURCE, "sqlite", "etlsync.connectors.sqlite.source:SqliteSource",
                  SqliteSourceOptions, "A table or query of a SQLite file",
                  frozenset({Capability.PASSES})),
        StageType(Kind.SINK, "sqlite", "etlsync.connectors.sqlite.sink:SqliteSink",
                  SqliteSinkOptions, "A table in a SQLite file, exactly-once",
                  frozenset({Capability.TRANSACTIONAL, Capability.CHANGES, Capability.KEYED,
                             Capability.REVERSIBLE})),
        StageType(Kind.CHECKPOINT, "sqlite",
                  "etlsync.connectors.sqlite.checkpoint:SqliteCheckpointStore",
                  SqliteCheckpointOptions, "Checkpoints in a SQLite file"),
        StageType(Kind.DEAD_LETTER, "sqlite", "etlsync.resilience.deadletter:SqliteDeadLetterSink",
                  SqliteDeadLetterOptions, "Dead letters in a SQLite table"),
    ),
)
