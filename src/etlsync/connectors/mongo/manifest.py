"""The MongoDB family: collection source, bulk sink, change-stream and oplog CDC, checkpoints."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from etlsync.core.capabilities import Capability
from etlsync.manifest import Kind, Manifest, Options, StageType


class MongoConnectionOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the URI comes from (it may hold credentials: prefer ``uri_env``/``uri_file``)."""

    uri: Annotated[str | None, Meta(description="A mongodb:// URI")] = None
    uri_env: Annotated[str, Meta(description="Environment variable holding the URI")] = \
        "ETLSYNC_MONGO_URI"
    uri_file: Annotated[str | None, Meta(description="File holding the URI (a secret)")] = None
    tls: Annotated[bool | None, Meta(description="Force TLS on or off")] = None
    tls_ca_file: Annotated[str | None, Meta(description="CA bundle")] = None
    tls_certificate_key_file: Annotated[str | None, Meta(
        description="Client certificate and key (PEM)")] = None
    tls_allow_invalid_hostnames: Annotated[bool, Meta(
        description="Skip host name verification (tests only)")] = False
    direct_connection: Annotated[bool | None, Meta(
        description="Talk to the one host given")] = None
    app_name: Annotated[str, Meta(description="Shown in server logs")] = "etlsync"
    options: Annotated[dict[str, Any], Meta(
        description="Further AsyncMongoClient keyword arguments")] = {}


ConnectionField = Annotated[str | MongoConnectionOptions | None, Meta(
    description="A mongodb:// URI or a mapping (uri, uri_env, uri_file, tls...); default: "
                "the URI in $ETLSYNC_MONGO_URI")]
Flatten = Annotated[Literal["json", "dotted"] | None, Meta(
    description="Nested values as JSON text, dotted columns, or kept as they are")]


class MongoOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("connection",)
    secrets: ClassVar[tuple[str, ...]] = ("connection",)

    connection: ConnectionField = None


class MongoSourceOptions(MongoOptions, kw_only=True):
    renamed: ClassVar[dict[str, str]] = {"chunk_size": "batch_size"}

    database: Annotated[str | None, Meta(description="The database")] = None
    collections: Annotated[list[str] | None, Meta(
        description="Collections ('name' or 'db.name'; default: all)")] = None
    sync_mode: Annotated[Literal["full_refresh", "incremental"], Meta(
        description="full_refresh (_id chunks) or incremental on cursor_field")] = "full_refresh"
    cursor_field: Annotated[str | None, Meta(
        description="Incremental: the field whose values only grow")] = None
    query: Annotated[dict[str, Any] | None, Meta(description="A filter document")] = None
    projection: Annotated[dict[str, Any] | list[str] | None, Meta(
        description="Fields to read")] = None
    flatten: Flatten = None
    max_depth: Annotated[int, Meta(ge=1, description="Deepest nesting converted")] = 32
    batch_size: Annotated[int, Meta(ge=1, description="Documents per batch")] = 5000


class MongoCdcOptions(MongoOptions, kw_only=True):
    database: Annotated[str | None, Meta(description="The database")] = None
    collections: Annotated[list[str] | None, Meta(
        description="Collections ('name' or 'db.name'; default: all)")] = None
    snapshot: Annotated[bool, Meta(description="Copy the collections first")] = False
    flatten: Flatten = None
    max_depth: Annotated[int, Meta(ge=1, description="Deepest nesting converted")] = 32
    batch_size: Annotated[int, Meta(ge=1, description="Most changes in one batch")] = 1000
    max_await_ms: Annotated[int, Meta(ge=1, description="Server wait per getMore")] = 500
    on_drop: Annotated[Literal["error", "truncate"], Meta(
        description="A watched collection is dropped: fail, or empty the target")] = "error"
    on_history_lost: Annotated[Literal["error", "resnapshot", "truncate_resnapshot"], Meta(
        description="The resume point left the oplog: fail, or re-snapshot")] = "error"
    idle_timeout: Annotated[float | None, Meta(
        description="End the run after so many quiet seconds")] = None
    heartbeat_seconds: Annotated[float, Meta(
        gt=0, description="Seconds between positions while idle")] = 10.0
    snapshot_chunk_size: Annotated[int, Meta(ge=1, description="Documents per snapshot chunk")] = \
        5000
    snapshot_projection: Annotated[dict[str, Any] | list[str] | None, Meta(
        description="Fields the snapshot reads")] = None
    metadata: Annotated[bool, Meta(description="Add _etl_op, _etl_ts, _etl_updated")] = False


class MongoChangeStreamOptions(MongoCdcOptions, kw_only=True):
    full_document: Annotated[Literal["updateLookup", "whenAvailable", "required"] | None, Meta(
        description="What updates carry: the whole document (updateLookup) or deltas")] = \
        "updateLookup"
    pipeline: Annotated[list[dict[str, Any]] | None, Meta(
        description="Extra change-stream pipeline stages")] = None


class MongoSinkOptions(MongoOptions, kw_only=True):
    renamed: ClassVar[dict[str, str]] = {"key": "primary_key"}

    database: Annotated[str, Meta(description="The target database")]
    collection: Annotated[str | None, Meta(
        description="The target collection (default: the batch's stream)")] = None
    write_mode: Annotated[Literal["append", "overwrite", "upsert"], Meta(
        description="append (insert), overwrite (empty first; not atomic), upsert on key")] = \
        "upsert"
    conflict: Annotated[Literal["skip", "overwrite", "merge", "fail"], Meta(
        description="Upserts: what a stored key gets")] = "overwrite"
    primary_key: Annotated[list[str], Meta(
        description="The field(s) identifying a document")] = \
        msgspec.field(default_factory=lambda: ["_id"])
    ordered: Annotated[bool, Meta(description="Ordered bulk writes")] = True
    unflatten: Annotated[bool, Meta(description="Rebuild documents from dotted columns")] = False
    restore_object_ids: Annotated[bool, Meta(
        description="24-hex-digit string _id values become ObjectIds")] = False
    write_concern: Annotated[dict[str, Any] | None, Meta(
        description="e.g. {w: majority, j: true}")] = None
    state_collection: Annotated[str | None, Meta(
        description="Store the checkpoint in each write's transaction (needs a replica set)")] = \
        None


class MongoCheckpointOptions(MongoOptions, kw_only=True):
    database: Annotated[str, Meta(description="The database of the state collection")]
    collection: Annotated[str, Meta(description="The state collection")] = "_etlsync_state"


_CDC = frozenset({Capability.CDC})

MANIFEST = Manifest(
    family="mongo",
    summary="MongoDB: collections, bulk writes, change streams and oplog tailing",
    extra="mongo",
    imports=("pymongo", "bson"),
    classifier="etlsync.resilience.classify:classify",
    stages=(
        StageType(Kind.SOURCE, "mongo", "etlsync.connectors.mongo.source:MongoSource",
                  MongoSourceOptions, "Collections in _id chunks, full refresh or incremental"),
        StageType(Kind.SOURCE, "mongo_cdc",
                  "etlsync.connectors.mongo.changestream:MongoChangeStreamSource",
                  MongoChangeStreamOptions, "Changes through change streams", _CDC),
        StageType(Kind.SOURCE, "mongo_oplog", "etlsync.connectors.mongo.oplog:MongoOplogSource",
                  MongoCdcOptions, "Changes by tailing local.oplog.rs", _CDC),
        StageType(Kind.SINK, "mongo", "etlsync.connectors.mongo.sink:MongoSink",
                  MongoSinkOptions, "Collections, exactly-once with state_collection",
                  frozenset({Capability.TRANSACTIONAL, Capability.CHANGES, Capability.KEYED})),
        StageType(Kind.CHECKPOINT, "mongo", "etlsync.connectors.mongo.checkpoint:MongoCheckpointStore",
                  MongoCheckpointOptions, "Checkpoints in a MongoDB collection"),
    ),
)
