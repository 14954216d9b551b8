"""What the two MongoDB CDC sources share: options, the snapshot-then-stream state machine,
batching of change events, heartbeats, and the errors for lost history and drops."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from etlsync.connectors.mongo.connection import MongoConnection, as_connection
from etlsync.connectors.mongo.convert import Flatten, check_flatten, convert_value, to_row
from etlsync.connectors.mongo.snapshot import (
    Snapshotter,
    Target,
    as_projection,
    list_targets,
    sample_schemas,
    stream_name,
)
from etlsync.core.batch import Batch, Op, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError, EtlsyncError
from etlsync.core.schema import Schema
from etlsync.core.stages import Source
from etlsync.log import get_logger

OnDrop = Literal["error", "truncate"]
OnHistoryLost = Literal["error", "resnapshot", "truncate_resnapshot"]


class ChangeStreamHistoryLost(EtlsyncError):
    """The committed resume point is no longer in the oplog (MongoDB error 286): changes
    between it and the oldest retained entry are gone. The message names the way out."""


class ChangeStreamInvalidated(EtlsyncError):
    """A watched collection or database was dropped or renamed (``on_drop="error"``)."""


class HistoryLostSignal(Exception):
    """Raised by a stream reader when its resume point is gone (internal)."""


class EventBatcher:
    """Groups change rows into batches of one stream, each carrying the position after its
    last event; skipped events still advance the position."""

    def __init__(self, batch_size: int, wrap: Any = None) -> None:
        self.batch_size = batch_size
        self.wrap = wrap
        """Turns a stored resume value into the batch position (``None``: as is)."""
        self.rows: list[Row] = []
        self.ops: list[Op] = []
        self.stream = ""
        self.resume: Any = None
        self.emitted: Any = None
        self.emitted_at = time.monotonic()

    def add(self, stream: str, op: Op, row: Row, resume: Any) -> Batch | None:
        """Add one row; return a finished batch when the stream changes (the batch ends at
        the previous event), else ``None``. Call :meth:`full` afterwards."""
        out = None
        if self.rows and stream != self.stream:
            out = self.flush()
        self.stream = stream
        self.rows.append(row)
        self.ops.append(op)
        self.resume = resume
        return out

    def full(self) -> bool:
        return len(self.rows) >= self.batch_size

    def flush(self, resume: Any = None) -> Batch:
        if resume is not None:
            self.resume = resume
        pos = self.resume
        if self.wrap is not None and pos is not None:
            pos = self.wrap(pos)
        batch = Batch(self.rows, stream=self.stream, position=pos, ops=self.ops)
        self.rows, self.ops = [], []
        self.emitted, self.emitted_at = self.resume, time.monotonic()
        return batch

    def idle(self, resume: Any, heartbeat: float) -> Batch | None:
        """At a quiet moment: the pending rows, or an empty heartbeat batch when the
        position moved and ``heartbeat`` seconds passed since the last batch."""
        if resume is not None:
            self.resume = resume
        if self.rows:
            return self.flush()
        if self.resume is not None and self.resume != self.emitted and (
                time.monotonic() - self.emitted_at >= heartbeat):
            return self.flush()
        return None


def truncate_batch(stream: str, position: Any) -> Batch:
    """A change batch that empties ``stream`` in the target."""
    return Batch([{}], stream=stream, position=position, ops=[Op.TRUNCATE])


class CdcSource(Source):
    """Base of the change-stream and oplog sources (see their docs for the options)."""

    capabilities = frozenset({Capability.CDC})

    kind = "cdc"

    def __init__(
        self,
        connection: MongoConnection | str | None = None,
        *,
        database: str | None = None,
        collections: str | Sequence[str] | None = None,
        snapshot: bool = False,
        flatten: Flatten = None,
        max_depth: int = 32,
        batch_size: int = 1000,
        max_await_ms: int = 500,
        on_drop: OnDrop = "error",
        on_history_lost: OnHistoryLost = "error",
        idle_timeout: float | None = None,
        heartbeat_seconds: float = 10.0,
        snapshot_chunk_size: int = 5000,
        snapshot_projection: Mapping[str, Any] | Sequence[str] | None = None,
        metadata: bool = False,
        name: str = "mongo_cdc",
    ) -> None:
        self.connection = as_connection(connection)
        self.database = database
        self.collections = [collections] if isinstance(collections, str) else (
            list(collections) if collections else None)
        if self.collections and database is None and any("." not in c for c in self.collections):
            raise ConfigError("without database=, name collections as 'db.collection'")
        if on_drop not in ("error", "truncate"):
            raise ConfigError(f"on_drop must be 'error' or 'truncate', not {on_drop!r}")
        if on_history_lost not in ("error", "resnapshot", "truncate_resnapshot"):
            raise ConfigError("on_history_lost must be 'error', 'resnapshot' or "
                              f"'truncate_resnapshot', not {on_history_lost!r}")
        if batch_size < 1 or snapshot_chunk_size < 1:
            raise ConfigError("batch_size and snapshot_chunk_size must be at least 1")
        self.snapshot = snapshot
        self.flatten = check_flatten(flatten)
        self.max_depth = max_depth
        self.batch_size = batch_size
        self.max_await_ms = max_await_ms
        self.on_drop = on_drop
        self.on_history_lost = on_history_lost
        self.idle_timeout = idle_timeout
        self.heartbeat_seconds = heartbeat_seconds
        self.snapshot_chunk_size = snapshot_chunk_size
        self.snapshot_projection = as_projection(snapshot_projection)
        self.metadata = metadata
        self.name = name
        self.committed: Any = None
        self.log = get_logger(source=name)
        self._seen_streams: set[str] = set()
        self._stream_names: dict[tuple[str, str], str] = {}

    # -- scope ---------------------------------------------------------------------------
    @property
    def single_db(self) -> bool:
        if self.database is not None:
            return True
        if self.collections:
            return len({c.partition(".")[0] for c in self.collections}) == 1
        return False

    def split(self, qualified: str) -> Target:
        if self.database is not None:
            return (self.database, qualified)
        db, _, coll = qualified.partition(".")
        return (db, coll)

    def stream_of(self, db: str, coll: str) -> str:
        key = (db, coll)
        name = self._stream_names.get(key)
        if name is None:
            name = self._stream_names[key] = stream_name(key, self.single_db)
        return name

    def watches(self, db: str, coll: str | None) -> bool:
        """Whether ``db.coll`` (or the database, ``coll=None``) is in this source's scope."""
        if self.collections:
            names = {self.split(c) for c in self.collections}
            return any(d == db and (coll is None or c == coll) for d, c in names)
        if self.database is not None:
            return db == self.database
        return db not in ("admin", "local", "config")

    async def targets(self, client: Any) -> list[Target]:
        return await list_targets(client, self.database, self.collections)

    async def discover(self) -> dict[str, Schema]:
        client = self.connection.client()
        try:
            targets = await self.targets(client)
            return await sample_schemas(client, targets, single_db=self.single_db,
                                        flatten=self.flatten, max_depth=self.max_depth,
                                        projection=self.snapshot_projection)
        finally:
            await client.close()

    # -- hooks for the concrete readers ---------------------------------------------------
    @abstractmethod
    async def capture(self, client: Any) -> Any:
        """The resume value (JSON-able) of the newest change now: the handover point."""

    @abstractmethod
    def stream(self, client: Any, resume: Any) -> AsyncIterator[Batch]:
        """Change batches after ``resume``, positions ``{"phase": "stream", "resume": ..}``;
        raises :class:`HistoryLostSignal` when ``resume`` is gone."""

    async def on_commit(self, position: Any) -> None:
        """Change streams and the oplog keep no per-reader state on the server: the
        committed position *is* the acknowledgement; it is kept for inspection."""
        self.committed = position

    # -- the state machine ----------------------------------------------------------------
    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        client = self.connection.client()
        try:
            async for batch in self._read(client, position):
                yield batch
        finally:
            await client.close()

    async def _read(self, client: Any, position: Any | None) -> AsyncIterator[Batch]:
        if isinstance(position, dict) and position.get("kind") not in (None, self.kind):
            raise ConfigError(f"{self.name}: the checkpoint was written by a "
                              f"{position.get('kind')!r} source, not {self.kind!r}")
        if position is None:
            resume = await self.capture(client)
            phase = "snapshot" if self.snapshot else "stream"
            snap_state: dict[str, Any] = {}
            self.log.info("mongo cdc start", phase=phase, server=self.connection.describe())
            yield Batch([], position=self._pos(phase, resume, snap_state))
        else:
            phase, resume = position["phase"], position["resume"]
            snap_state = position.get("collections") or {}
            self.log.info("mongo cdc resume", phase=phase)
        while True:
            if phase == "snapshot":
                targets = await self.targets(client)
                self._seen_streams.update(self.stream_of(*t) for t in targets)
                snap = Snapshotter(client, targets, single_db=self.single_db,
                                   chunk_size=self.snapshot_chunk_size, flatten=self.flatten,
                                   max_depth=self.max_depth, projection=self.snapshot_projection,
                                   query=None)
                async for batch, st in snap.read(snap_state):
                    batch.position = self._pos("snapshot", resume, st)
                    yield batch
                phase, snap_state = "stream", {}
            try:
                async for batch in self.stream(client, resume):
                    yield batch
                return
            except HistoryLostSignal as exc:
                if self.on_history_lost == "error":
                    raise ChangeStreamHistoryLost(
                        f"{self.name}: cannot resume from the committed position {resume!r}: "
                        "the oplog no longer holds it (history lost; the oplog is too small "
                        "for the time the pipeline was stopped). Way out: "
                        "on_history_lost='truncate_resnapshot' (or 'resnapshot') re-snapshots "
                        "the collections and then continues streaming; or delete this "
                        "pipeline's checkpoint and run with snapshot=True. Grow the oplog "
                        "(replSetResizeOplog) to avoid a repeat.") from exc
                self.log.warning("mongo cdc history lost: re-snapshotting", resume=resume,
                                 mode=self.on_history_lost)
                resume = await self.capture(client)
                if self.on_history_lost == "truncate_resnapshot":
                    for t in await self.targets(client):
                        yield truncate_batch(self.stream_of(*t), None)
                phase, snap_state = "snapshot", {}

    def _pos(self, phase: str, resume: Any, snap: dict[str, Any]) -> dict[str, Any]:
        pos: dict[str, Any] = {"kind": self.kind, "phase": phase, "resume": resume}
        if phase == "snapshot":
            pos["collections"] = snap
        return pos

    def stream_pos(self, resume: Any) -> dict[str, Any]:
        return {"kind": self.kind, "phase": "stream", "resume": resume}

    def dropped(self, what: str, streams: Sequence[str], position: Any) -> list[Batch]:
        """Handle a drop/rename of a watched collection or database per ``on_drop``."""
        if self.on_drop == "error":
            raise ChangeStreamInvalidated(
                f"{self.name}: {what}; the stream cannot follow it. The checkpoint stays "
                "before this event. Way out: recreate the collection and re-snapshot it "
                "(delete this pipeline's checkpoint and run with snapshot=True), or set "
                "on_drop='truncate' to empty the target and continue.")
        self.log.warning("mongo cdc drop: truncating target", change=what, streams=list(streams))
        return [truncate_batch(s, position) for s in streams]

    def row_of(self, doc: Mapping[str, Any], op: Op, meta: Mapping[str, Any] | None) -> Row:
        row = to_row(doc, self.flatten, self.max_depth, own=True)
        if self.metadata and meta is not None:
            row["_etl_op"] = str(op)
            row["_etl_ts"] = convert_value(meta.get("ts"))
            row["_etl_updated"] = meta.get("updated")
        return row

    def since_idle(self, last_event: float) -> bool:
        return self.idle_timeout is not None and time.monotonic() - last_event >= self.idle_timeout
