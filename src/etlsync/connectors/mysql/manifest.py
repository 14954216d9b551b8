"""The MySQL/MariaDB family: source, sink, binlog CDC and checkpoint store."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.manifest import Kind, Manifest, Options, StageType, deprecated


class MysqlConnection(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How to reach the server (the password from ``password_env`` or ``password_file``)."""

    host: Annotated[str, Meta(description="Host name or address")] = "127.0.0.1"
    port: Annotated[int, Meta(description="Port")] = 3306
    user: Annotated[str, Meta(description="User name")] = "root"
    password: Annotated[str | None, Meta(
        description="The password: only as ${VAR}, never written out")] = None
    password_env: Annotated[str | None, Meta(
        description="Environment variable holding the password")] = None
    password_file: Annotated[str | None, Meta(
        description="File whose first line is the password")] = None
    database: Annotated[str | None, Meta(description="Default database")] = None
    ssl: Annotated[bool, Meta(description="Use TLS")] = False
    ssl_ca: Annotated[str | None, Meta(description="CA bundle (turns TLS on)")] = None
    ssl_cert: Annotated[str | None, Meta(description="Client certificate")] = None
    ssl_key: Annotated[str | None, Meta(description="Client certificate's key")] = None
    ssl_verify: Annotated[bool, Meta(description="Verify the server certificate")] = True
    connect_timeout: Annotated[float, Meta(gt=0, description="Seconds to connect")] = 10.0


_FLAT = (*MysqlConnection.__struct_fields__, "db")
ConnectionField = Annotated[str | MysqlConnection | None, Meta(
    description="A mysql://user@host:port/database URI, or a mapping of connection fields "
                "(host, port, user, database, password_env, ssl, ...)")]


class MysqlOptions(Options, kw_only=True):
    """Options of a MySQL stage: ``connection`` first."""

    renamed: ClassVar[dict[str, str]] = {"options": "connection"}
    secrets: ClassVar[tuple[str, ...]] = ("password",)

    connection: ConnectionField = None

    @classmethod
    def migrate(cls, values: dict[str, Any], where: str) -> dict[str, Any]:
        values = super().migrate(values, where)
        flat = {k: values.pop(k) for k in _FLAT if k in values and k not in cls.__struct_fields__}
        if flat:
            deprecated(f"{where}.{next(iter(flat))}",
                       "connection fields now go under 'connection:'")
            if "db" in flat:
                flat.setdefault("database", flat.pop("db"))
            given = values.get("connection")
            if isinstance(given, str):
                raise ConfigError(f"{where}.connection: give connection fields under "
                                  "'connection:', not beside a connection URI")
            values["connection"] = {**dict(given or {}), **flat}
        nested = values.get("connection")
        if isinstance(nested, dict) and "db" in nested:
            deprecated(f"{where}.connection.db", "the field is now called 'database'")
            nested = dict(nested)
            nested.setdefault("database", nested.pop("db"))
            values["connection"] = nested
        return values


class MysqlSourceOptions(MysqlOptions, kw_only=True):
    renamed: ClassVar[dict[str, str]] = {"options": "connection", "chunk_rows": "batch_size"}
    positional: ClassVar[tuple[str, ...]] = ("tables",)

    tables: Annotated[list[str], Meta(description="'table' or 'database.table' names")]
    sync_mode: Annotated[Literal["full_refresh", "incremental"], Meta(
        description="full_refresh (primary-key chunks) or incremental on cursor_field")] = \
        "full_refresh"
    cursor_field: Annotated[str | None, Meta(
        description="Incremental: the column whose values only grow")] = None
    batch_size: Annotated[int, Meta(ge=1, description="Rows per chunk")] = 10_000


class MysqlSinkOptions(MysqlOptions, kw_only=True):
    table: Annotated[str, Meta(description="The target table (created when absent)")]
    database: Annotated[str | None, Meta(
        description="Database of the table (default: the connection's)")] = None
    write_mode: Annotated[Literal["append", "overwrite", "upsert"], Meta(
        description="append (LOAD DATA), overwrite (RENAME at the end of the pass), upsert")] = \
        "append"
    primary_key: Annotated[list[str], Meta(description="Key columns (default: the table's)")] = []
    conflict: Annotated[Literal["skip", "overwrite", "merge", "fail"], Meta(
        description="Upserts: what a stored key gets")] = "overwrite"
    schema_policy: Annotated[Literal["evolve", "freeze", "discard"], Meta(
        description="Source columns the table lacks: add, fail, or drop")] = "evolve"
    create: Annotated[bool, Meta(description="Create the table when it is missing")] = True
    exactly_once: Annotated[bool, Meta(
        description="Store the pipeline's checkpoint in each batch's transaction")] = True
    state_table: Annotated[str, Meta(description="The checkpoint table")] = "_etlsync_state"
    load_method: Annotated[Literal["auto", "load_data", "insert"], Meta(
        description="How appends load: LOAD DATA LOCAL when allowed, or INSERT")] = "auto"


class MysqlCdcOptions(MysqlOptions, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("tables",)

    tables: Annotated[list[str], Meta(description="'table' or 'database.table' names")]
    snapshot: Annotated[bool, Meta(
        description="Copy the tables first, then stream from the snapshot's position")] = False
    chunk_rows: Annotated[int, Meta(ge=1, description="Rows per snapshot chunk")] = 10_000
    heartbeat: Annotated[float, Meta(gt=0, description="Seconds between server heartbeats")] = 1.0
    max_batch_rows: Annotated[int, Meta(ge=1, description="Most rows in one batch")] = 5000
    idle_position_seconds: Annotated[float, Meta(
        gt=0, description="Seconds between positions while idle")] = 1.0
    use_gtid: Annotated[bool, Meta(description="Resume by GTID where the server has it")] = True
    server_id: Annotated[int | None, Meta(description="The replica's server id")] = None
    reconnect_attempts: Annotated[int, Meta(ge=0, description="Reconnects before failing")] = 10


class MysqlCheckpointOptions(MysqlOptions, kw_only=True):
    table: Annotated[str, Meta(description="The state table")] = "_etlsync_state"
    database: Annotated[str | None, Meta(
        description="Database of the table (default: the connection's)")] = None


MANIFEST = Manifest(
    family="mysql",
    summary="MySQL / MariaDB: keyset snapshots, LOAD DATA sink, binlog CDC (GTID)",
    extra="mysql",
    imports=("aiomysql", "pymysql"),
    classifier="etlsync.resilience.classify:classify",
    stages=(
        StageType(Kind.SOURCE, "mysql", "etlsync.connectors.mysql.source:MysqlSource",
                  MysqlSourceOptions, "Tables, full refresh or incremental",
                  frozenset({Capability.PASSES})),
        StageType(Kind.SOURCE, "mysql_cdc", "etlsync.connectors.mysql.cdc:MysqlCdcSource",
                  MysqlCdcOptions, "Changes from the binlog (ROW format)",
                  frozenset({Capability.CDC})),
        StageType(Kind.SINK, "mysql", "etlsync.connectors.mysql.sink:MysqlSink",
                  MysqlSinkOptions, "An InnoDB table, exactly-once with the state table",
                  frozenset({Capability.TRANSACTIONAL, Capability.CHANGES, Capability.KEYED})),
        StageType(Kind.CHECKPOINT, "mysql",
                  "etlsync.connectors.mysql.checkpoint:MysqlCheckpointStore",
                  MysqlCheckpointOptions, "Checkpoints in a MySQL/MariaDB table"),
    ),
)
