"""The PostgreSQL family: source, sink, CDC, checkpoint store and dead letters."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from etlsync.core.capabilities import Capability
from etlsync.manifest import Kind, Manifest, Options, StageType, deprecated


class PgConnection(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How to reach the server; the password never goes here (``password_env`` or
    ``password_file``, else ``PGPASSWORD``)."""

    dsn: Annotated[str | None, Meta(description="A postgresql:// URI")] = None
    host: Annotated[str | None, Meta(description="Host name or address")] = None
    port: Annotated[int | None, Meta(description="Port (5432)")] = None
    user: Annotated[str | None, Meta(description="User name")] = None
    database: Annotated[str | None, Meta(description="Database name")] = None
    password_env: Annotated[str | None, Meta(
        description="Environment variable holding the password")] = None
    password_file: Annotated[str | None, Meta(
        description="File whose first line is the password (a mounted secret)")] = None
    sslmode: Annotated[Literal["disable", "allow", "prefer", "require", "verify-ca",
                               "verify-full"] | None, Meta(description="TLS mode")] = None
    sslrootcert: Annotated[str | None, Meta(description="CA bundle to verify the server")] = None
    sslcert: Annotated[str | None, Meta(description="Client certificate (TLS)")] = None
    sslkey: Annotated[str | None, Meta(description="Client certificate's key")] = None
    application_name: Annotated[str, Meta(description="Shown in pg_stat_activity")] = "etlsync"
    connect_timeout: Annotated[float, Meta(gt=0, description="Seconds to connect")] = 30.0


_FLAT = tuple(f for f in PgConnection.__struct_fields__ if f != "dsn")
ConnectionField = Annotated[str | PgConnection | None, Meta(
    description="A postgresql:// URI, or a mapping of connection fields (host, port, user, "
                "database, password_env, password_file, sslmode, ...)")]


class PgOptions(Options, kw_only=True):
    """Options of a PostgreSQL stage: ``connection`` first."""

    renamed: ClassVar[dict[str, str]] = {"dsn": "connection"}
    positional: ClassVar[tuple[str, ...]] = ("connection",)

    connection: ConnectionField = None

    @classmethod
    def migrate(cls, values: dict[str, Any], where: str) -> dict[str, Any]:
        values = super().migrate(values, where)
        flat = {k: values.pop(k) for k in _FLAT if k in values and k not in cls.__struct_fields__}
        if flat:
            deprecated(f"{where}.{next(iter(flat))}",
                       "connection fields now go under 'connection:'")
            given = values.get("connection")
            nested = {"dsn": given} if isinstance(given, str) else dict(given or {})
            values["connection"] = {**nested, **flat}
        return values


Mode = Literal["append", "overwrite", "upsert"]
Conflict = Literal["skip", "overwrite", "merge", "fail"]
Policy = Literal["evolve", "freeze", "discard"]


class PostgresSourceOptions(PgOptions, kw_only=True):
    table: Annotated[str | None, Meta(description="One table (taken literally)")] = None
    tables: Annotated[list[str] | None, Meta(
        description="Several tables ('name' or 'schema.name'), read in parallel")] = None
    query: Annotated[str | None, Meta(description="A SELECT to read instead of tables")] = None
    stream: Annotated[str, Meta(description="Stream name of the query")] = "query"
    schema: Annotated[str, Meta(description="Schema of the tables")] = "public"
    batch_size: Annotated[int, Meta(ge=1, description="Rows per batch (keyset chunks)")] = 10_000
    sync_mode: Annotated[Literal["full_refresh", "incremental"], Meta(
        description="full_refresh (keyset snapshot) or incremental on cursor_field")] = \
        "full_refresh"
    cursor_field: Annotated[str | None, Meta(
        description="Incremental: the column whose values only grow")] = None
    primary_key: Annotated[list[str], Meta(
        description="Key columns (default: the table's; makes a query resumable)")] = []
    pool_size: Annotated[int, Meta(ge=1, description="Connections reading tables at once")] = 4
    poll_interval: Annotated[float | None, Meta(
        description="Incremental: keep polling every so many seconds")] = None


class PostgresSinkOptions(PgOptions, kw_only=True):
    table: Annotated[str, Meta(description="The target table (created when absent)")]
    schema: Annotated[str, Meta(description="Schema of the table")] = "public"
    write_mode: Annotated[Mode, Meta(
        description="append (COPY), overwrite (swap at the end of the pass), upsert")] = "append"
    primary_key: Annotated[list[str], Meta(
        description="Key columns (default: the table's, or the source schema's)")] = []
    conflict: Annotated[Conflict, Meta(description="Upserts: what a stored key gets")] = \
        "overwrite"
    schema_policy: Annotated[Policy, Meta(
        description="Source columns the table lacks: add, fail, or drop")] = "evolve"
    column_map: Annotated[dict[str, str] | None, Meta(
        description="Source column -> target column")] = None
    type_map: Annotated[dict[str, str] | None, Meta(
        description="Target column -> PostgreSQL type for created columns")] = None
    create: Annotated[bool, Meta(description="Create the table when it is missing")] = True
    exactly_once: Annotated[bool, Meta(
        description="Store the pipeline's checkpoint in each batch's transaction")] = True
    state_table: Annotated[str, Meta(description="The checkpoint table")] = "_etlsync_state"
    state_schema: Annotated[str | None, Meta(
        description="Schema of the checkpoint table (default: schema)")] = None
    text_copy: Annotated[bool, Meta(
        description="COPY as text where values render exactly (else binary)")] = True


class PostgresCdcOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("connection",)

    connection: ConnectionField
    slot: Annotated[str, Meta(description="Replication slot (created when absent)")]
    publication: Annotated[str, Meta(description="Publication (created when absent)")]
    tables: Annotated[list[str] | None, Meta(
        description="'schema.table' names (default: the publication's)")] = None
    create_slot: Annotated[bool, Meta(description="Create the slot when absent")] = True
    create_publication: Annotated[bool, Meta(
        description="Create the publication when absent")] = True
    snapshot: Annotated[Literal["initial", "never"], Meta(
        description="initial: copy the tables first, consistent with the slot")] = "initial"
    heartbeat_interval: Annotated[float | None, Meta(
        description="Seconds between heartbeat messages (an idle slot keeps moving)")] = None
    status_interval: Annotated[float, Meta(
        gt=0, description="Seconds between standby status updates")] = 10.0
    batch_rows: Annotated[int, Meta(ge=1, description="Most rows in one batch")] = 5000
    snapshot_chunk_rows: Annotated[int, Meta(ge=1, description="Rows per snapshot chunk")] = \
        10_000
    streaming: Annotated[bool, Meta(
        description="Protocol v2: the server streams large transactions")] = True
    replication_settings: Annotated[dict[str, str] | None, Meta(
        description="Settings of the walsender session")] = None


class PostgresCheckpointOptions(PgOptions, kw_only=True):
    table: Annotated[str, Meta(description="The state table")] = "_etlsync_state"
    schema: Annotated[str, Meta(description="Schema of the state table")] = "public"


class PostgresDeadLetterOptions(PgOptions, kw_only=True):
    table: Annotated[str, Meta(description="The dead-letter table ('schema.table')")] = \
        "etlsync_dead_letters"


MANIFEST = Manifest(
    family="postgres",
    summary="PostgreSQL: keyset snapshots, COPY sink with every write mode, logical "
            "replication CDC",
    extra="postgres",
    imports=("asyncpg",),
    classifier="etlsync.resilience.classify:classify",
    stages=(
        StageType(Kind.SOURCE, "postgres", "etlsync.connectors.postgres.source:PostgresSource",
                  PostgresSourceOptions, "Tables or a query, full refresh or incremental",
                  frozenset({Capability.PASSES})),
        StageType(Kind.SOURCE, "postgres_cdc", "etlsync.connectors.postgres.cdc:PostgresCdcSource",
                  PostgresCdcOptions, "Changes through a logical replication slot (pgoutput)",
                  frozenset({Capability.CDC})),
        StageType(Kind.SINK, "postgres", "etlsync.connectors.postgres.sink:PostgresSink",
                  PostgresSinkOptions, "A table, exactly-once with the state table",
                  frozenset({Capability.TRANSACTIONAL, Capability.CHANGES, Capability.KEYED,
                             Capability.REVERSIBLE})),
        StageType(Kind.CHECKPOINT, "postgres",
                  "etlsync.connectors.postgres.checkpoint:PostgresCheckpointStore",
                  PostgresCheckpointOptions, "Checkpoints in a PostgreSQL table"),
        StageType(Kind.DEAD_LETTER, "postgres",
                  "etlsync.resilience.deadletter:PostgresDeadLetterSink",
                  PostgresDeadLetterOptions, "Dead letters in a PostgreSQL table"),
    ),
)
