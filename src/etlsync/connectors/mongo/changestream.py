"""MongoChangeStreamSource: CDC from change streams of a collection, a database or the
whole deployment, with the resume token as the position and a gap-free snapshot handover."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from etlsync.connectors.mongo.cdc import CdcSource, EventBatcher, HistoryLostSignal
from etlsync.connectors.mongo.convert import convert_value, to_json
from etlsync.core.batch import Batch, Op, Row
from etlsync.core.errors import ConfigError, ServiceNotReady

HISTORY_LOST_CODES = frozenset({286})
_ROW_EVENTS = frozenset({"insert", "update", "replace", "delete"})
NO_CHANGE_STREAM_CODES = frozenset({40573})  # "only supported on replica sets"


class _Closed(Exception):
    """The change stream's cursor is closed (after an invalidate)."""


def _history_lost(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None) or {}
    return code in HISTORY_LOST_CODES or details.get("codeName") == "ChangeStreamHistoryLost"


class MongoChangeStreamSource(CdcSource):
    """Change data from MongoDB change streams.

    Scope: ``collections`` (with ``database``, or as ``db.coll``) watches those collections;
    ``database`` alone watches a database; neither watches the whole deployment.

    :param full_document: ``"updateLookup"`` (default: updates carry the document as it is
        now), ``"whenAvailable"``/``"required"`` (post-images), or ``None``: update rows then
        hold ``_id``, the updated fields (dotted names) and removed fields as ``None``: a
        partial row for a sink with ``conflict="merge"``.
    :param snapshot: first read the collections in ``_id`` chunks, then stream from the
        resume token captured *before* the snapshot (no gap; changes seen twice are applied
        idempotently by an upsert/delete-by-key sink).
    :param pipeline: extra aggregation stages appended to the change stream (e.g. a
        ``$match``).
    :param flatten: ``None``, ``"dotted"`` or ``"json"``.
    :param batch_size: events per batch at most; a batch is also cut when the stream is
        quiet and when the collection changes.
    :param max_await_ms: how long one server round trip waits for new events.
    :param on_drop: ``"error"`` (raise :class:`ChangeStreamInvalidated`) or ``"truncate"``
        (emit a truncate for the collection and go on) when a watched collection or
        database is dropped or renamed.
    :param on_history_lost: ``"error"`` (raise :class:`ChangeStreamHistoryLost` naming the
        way out), ``"resnapshot"`` or ``"truncate_resnapshot"`` (empty the targets first, so
        deletes in the lost window are not missed).
    :param idle_timeout: end the read after this many seconds without events (for batch
        jobs and tests); ``None`` streams until stopped.
    :param heartbeat_seconds: while events of other collections or none arrive, emit an
        empty batch this often when the resume token moved, so the checkpoint keeps up.
    :param metadata: add ``_etl_op``, ``_etl_ts`` (cluster time) and ``_etl_updated`` (the
        update description as JSON) columns.

    Rows: inserts, updates and replaces carry the whole document (``Op.INSERT`` /
    ``Op.UPDATE``); deletes carry the document key (``Op.DELETE``). An update whose
    looked-up document is gone (deleted since) is skipped: its delete follows. Positions:
    ``{"kind": "change_stream", "phase": "snapshot"|"stream", "resume": <resume token>}``.
    """

    kind = "change_stream"

    def __init__(
        self,
        connection: Any = None,
        *,
        full_document: str | None = "updateLookup",
        pipeline: Sequence[Mapping[str, Any]] | None = None,
        name: str = "mongo_change_stream",
        **options: Any,
    ) -> None:
        super().__init__(connection, name=name, **options)
        if full_document not in (None, "default", "updateLookup", "whenAvailable", "required"):
            raise ConfigError(f"full_document {full_document!r} is not a change-stream option")
        self.full_document = None if full_document == "default" else full_document
        self.pipeline = [dict(s) for s in pipeline or ()]

    # -- watch ---------------------------------------------------------------------------
    def _watch_target(self, client: Any) -> tuple[Any, list[dict[str, Any]]]:
        stages = list(self.pipeline)
        keep = {"operationType": {"$in": ["invalidate", "dropDatabase"]}}
        if self.collections and len(self.collections) == 1:
            db, coll = self.split(self.collections[0])
            return client[db][coll], stages
        if self.collections:
            pairs = [self.split(c) for c in self.collections]
            dbs = {d for d, _ in pairs}
            if len(dbs) == 1:
                match = {"$or": [{"ns.coll": {"$in": [c for _, c in pairs]}}, keep]}
                return client[next(iter(dbs))], [{"$match": match}, *stages]
            ors: list[dict[str, Any]] = [{"ns.db": d, "ns.coll": c} for d, c in pairs]
            ors.append({"operationType": "dropDatabase", "ns.db": {"$in": sorted(dbs)}})
            return client, [{"$match": {"$or": ors}}, *stages]
        if self.database is not None:
            return client[self.database], stages
        return client, stages

    async def _open(self, client: Any, resume: Any, start_after: bool = False) -> Any:
        from pymongo.errors import OperationFailure

        target, stages = self._watch_target(client)
        kw: dict[str, Any] = {"batch_size": self.batch_size, "max_await_time_ms": self.max_await_ms}
        if self.full_document is not None:
            kw["full_document"] = self.full_document
        if resume is not None:
            kw["start_after" if start_after else "resume_after"] = resume
        try:
            return await target.watch(stages, **kw)
        except OperationFailure as exc:
            if exc.code in NO_CHANGE_STREAM_CODES:
                raise ServiceNotReady(
                    f"{self.name}: the server does not offer change streams ({exc}). They need "
                    "a replica set or sharded cluster: start mongod with --replSet rs0 and run "
                    "rs.initiate() once (a one-node replica set is fine), or use "
                    "MongoOplogSource where only the oplog is readable.") from exc
            raise

    async def capture(self, client: Any) -> Any:
        """The current resume token (the stream's post-batch token before any event)."""
        cs = await self._open(client, None)
        try:
            token = cs.resume_token
            if token is None:
                await cs.try_next()
                token = cs.resume_token
            return dict(token) if token is not None else None
        finally:
            await cs.close()

    # -- stream --------------------------------------------------------------------------
    async def _pump(self, cs: Any, out: asyncio.Queue[tuple[list[Any], Any, BaseException | None]],
                    ) -> None:
        """Read raw events ahead into ``out`` (lists of up to ``batch_size``; an empty list
        when the stream is quiet), so the next server round trip overlaps the conversion of
        the previous events. Bounded: ``out`` holds two lists."""
        size = self.batch_size
        try:
            while cs.alive:
                events: list[Any] = []
                while len(events) < size:
                    change = await cs.try_next()
                    if change is None:
                        break
                    events.append(change)
                await out.put((events, cs.resume_token, None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the reader, raised there
            await out.put(([], None, exc))
        await out.put(([], None, _Closed()))

    async def stream(self, client: Any, resume: Any) -> AsyncIterator[Batch]:
        from pymongo.errors import OperationFailure

        batcher = EventBatcher(self.batch_size, wrap=self.stream_pos)
        batcher.resume = batcher.emitted = resume
        start_after = False
        last_event = time.monotonic()
        while True:
            try:
                cs = await self._open(client, resume, start_after)
            except OperationFailure as exc:
                if _history_lost(exc):
                    raise HistoryLostSignal(str(exc)) from exc
                raise
            queue: asyncio.Queue[tuple[list[Any], Any, BaseException | None]] = (
                asyncio.Queue(maxsize=2))
            pump = asyncio.ensure_future(self._pump(cs, queue))
            reopen = False
            try:
                while not reopen:
                    events, token, error = await queue.get()
                    if isinstance(error, _Closed):
                        reopen = True
                        break
                    if error is not None:
                        if _history_lost(error):
                            raise HistoryLostSignal(str(error)) from error
                        raise error
                    if not events:
                        if token is not None:
                            resume = token
                        out = batcher.idle(resume, self.heartbeat_seconds)
                        if out is not None:
                            yield out
                        if self.since_idle(last_event):
                            return
                        continue
                    last_event = time.monotonic()
                    for change in events:
                        resume = pos = change["_id"]
                        kind = change.get("operationType")
                        if kind in _ROW_EVENTS:
                            item = self._row(change, kind)
                            if item is None:
                                batcher.resume = pos
                                continue
                            ns = change["ns"]
                            stream = self.stream_of(ns["db"], ns["coll"])
                            self._seen_streams.add(stream)
                            done = batcher.add(stream, item[0], item[1], pos)
                            if done is not None:
                                yield done
                            if batcher.full():
                                yield batcher.flush()
                        elif kind in ("drop", "rename", "dropDatabase"):
                            if batcher.rows:
                                yield batcher.flush()
                            for b in self._drop(change, self.stream_pos(pos)):
                                yield b
                            batcher.resume = batcher.emitted = pos
                        elif kind == "invalidate":
                            if batcher.rows:
                                yield batcher.flush()
                            # only reached with on_drop="truncate": restart after the event
                            start_after, reopen = True, True
                            break
                        else:
                            batcher.resume = pos
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
                await cs.close()

    def _drop(self, change: Mapping[str, Any], pos: Any) -> list[Batch]:
        ns = change.get("ns") or {}
        db, coll = ns.get("db", ""), ns.get("coll")
        kind = change["operationType"]
        if kind == "dropDatabase":
            prefix = "" if self.single_db else f"{db}."
            streams = sorted(s for s in self._seen_streams
                             if self.single_db or s.startswith(prefix))
            if self.single_db and db != self.database and self.database is not None:
                streams = []
            return self.dropped(f"database {db!r} was dropped", streams, pos)
        what = f"collection {db}.{coll} was {'renamed' if kind == 'rename' else 'dropped'}"
        return self.dropped(what, [self.stream_of(db, coll or "")], pos)

    def _row(self, change: Mapping[str, Any], kind: str) -> tuple[Op, Row] | None:
        meta: dict[str, Any] | None = None
        if self.metadata:
            desc = change.get("updateDescription")
            meta = {"ts": change.get("clusterTime"),
                    "updated": to_json(desc) if desc is not None else None}
        if kind == "delete":
            key = change.get("documentKey") or {}
            row = {k: convert_value(v) for k, v in key.items()}
            if meta is not None:
                row.update(self.row_of({}, Op.DELETE, meta))
            return Op.DELETE, row
        doc = change.get("fullDocument")
        op = Op.INSERT if kind == "insert" else Op.UPDATE
        if doc is not None:
            return op, self.row_of(doc, op, meta)
        if kind != "update" or self.full_document is not None:
            return None  # the document is gone (deleted after this change): a delete follows
        desc = change.get("updateDescription") or {}
        partial: dict[str, Any] = dict(change.get("documentKey") or {})
        partial.update(desc.get("updatedFields") or {})
        row = self.row_of(partial, op, meta)
        for f in desc.get("removedFields") or ():
            row[f] = None
        return op, row
