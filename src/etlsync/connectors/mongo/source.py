"""MongoSource: full-refresh reads of collections in ``_id`` chunks (resumable
mid-collection) and incremental reads on a cursor field pushed down as a ``$gte`` query."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from etlsync.connectors.mongo.connection import MongoConnection, as_connection
from etlsync.connectors.mongo.convert import (
    Flatten,
    check_flatten,
    decode_value,
    encode_value,
    get_path,
    to_row,
)
from etlsync.connectors.mongo.snapshot import (
    Snapshotter,
    Target,
    as_projection,
    list_targets,
    sample_schemas,
    stream_name,
)
from etlsync.core.batch import Batch
from etlsync.core.errors import ConfigError
from etlsync.core.incremental import Watermark
from etlsync.core.modes import SyncMode
from etlsync.core.options import renamed_keywords
from etlsync.core.schema import Schema
from etlsync.core.stages import Source
from etlsync.log import get_logger


class MongoSource(Source):
    """Reads MongoDB collections as batches of rows.

    :param connection: a :class:`MongoConnection`, a URI, or ``None`` (URI from the env var
        ``ETLSYNC_MONGO_URI``).
    :param database: the database; ``None`` with ``collections`` named ``db.coll``.
    :param collections: one name or several; default every collection of ``database``.
    :param sync_mode: ``full_refresh`` (every run reads everything, in ``_id`` chunks; a run
        resumed from a checkpoint continues mid-collection) or ``incremental`` (documents
        whose ``cursor_field`` is ``>=`` the watermark; ties handled by
        :class:`~etlsync.core.incremental.Watermark`).
    :param cursor_field: the field that only grows (dotted paths allowed), for incremental.
    :param query: an extra filter document applied to every read.
    :param projection: fields to read (a list, or a projection document); ``_id`` and the
        cursor field are always read.
    :param flatten: ``None``, ``"dotted"`` or ``"json"`` (see :data:`~.convert.Flatten`).
    :param batch_size: documents per batch.

    Positions: ``{"mode": "full_refresh", "collections": {"db.coll": {"last_id", "done"}}}``
    or ``{"mode": "incremental", "streams": {"db.coll": <watermark state>}}``.
    """

    @renamed_keywords({"chunk_size": "batch_size"})
    def __init__(
        self,
        connection: MongoConnection | str | Mapping[str, Any] | None = None,
        *,
        database: str | None = None,
        collections: str | Sequence[str] | None = None,
        sync_mode: SyncMode | str = SyncMode.FULL_REFRESH,
        cursor_field: str | None = None,
        query: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | Sequence[str] | None = None,
        flatten: Flatten = None,
        max_depth: int = 32,
        batch_size: int = 5000,
        name: str = "mongo",
    ) -> None:
        self.connection = as_connection(connection)
        self.database = database
        self.collections = [collections] if isinstance(collections, str) else (
            list(collections) if collections else None)
        self.mode = SyncMode(sync_mode)
        if self.mode is SyncMode.CDC:
            raise ConfigError("MongoSource reads full_refresh or incremental; for CDC use "
                              "MongoChangeStreamSource or MongoOplogSource")
        if self.mode is SyncMode.INCREMENTAL and not cursor_field:
            raise ConfigError("MongoSource(sync_mode='incremental') needs cursor_field=")
        if batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        self.cursor_field = cursor_field
        self.query = dict(query or {})
        required = ["_id"] + ([cursor_field] if cursor_field else [])
        self.projection = as_projection(projection, required)
        self.flatten = check_flatten(flatten)
        self.max_depth = max_depth
        self.batch_size = batch_size
        self.name = name
        self.log = get_logger(source=name)

    async def discover(self) -> dict[str, Schema]:
        client = self.connection.client()
        try:
            targets = await list_targets(client, self.database, self.collections)
            return await sample_schemas(client, targets, single_db=self._single_db(targets),
                                        flatten=self.flatten, max_depth=self.max_depth,
                                        projection=self.projection)
        finally:
            await client.close()

    @staticmethod
    def _single_db(targets: Sequence[Target]) -> bool:
        return len({t[0] for t in targets}) <= 1

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        client = self.connection.client()
        try:
            targets = await list_targets(client, self.database, self.collections)
            self.log.info("mongo read", mode=str(self.mode), collections=len(targets),
                          server=self.connection.describe())
            if self.mode is SyncMode.INCREMENTAL:
                async for batch in self._incremental(client, targets, position):
                    yield batch
                return
            state: dict[str, Any] = {}
            if isinstance(position, dict) and position.get("mode") == "full_refresh":
                state = position.get("collections") or {}
                if state and all(s.get("done") for s in state.values()):
                    state = {}  # a finished full refresh starts over on the next run
            snap = Snapshotter(client, targets, single_db=self._single_db(targets),
                               chunk_size=self.batch_size, flatten=self.flatten,
                               max_depth=self.max_depth, projection=self.projection,
                               query=self.query)
            async for batch, st in snap.read(state):
                batch.position = {"mode": "full_refresh", "collections": st}
                yield batch
        finally:
            await client.close()

    async def _incremental(self, client: Any, targets: Sequence[Target],
                           position: Any | None) -> AsyncIterator[Batch]:
        assert self.cursor_field is not None
        cf = self.cursor_field
        states: dict[str, Any] = {}
        if isinstance(position, dict) and position.get("mode") == "incremental":
            states = dict(position.get("streams") or {})
        single = self._single_db(targets)
        for target in targets:
            key = f"{target[0]}.{target[1]}"
            raw = states.get(key)
            wm = Watermark.from_state("c", ("k",), decode_value(raw) if raw else None)
            query = dict(self.query)
            if wm.value is not None:
                query[cf] = {"$gte": wm.value}
            else:
                query[cf] = {"$ne": None}
            coll = client[target[0]][target[1]]
            cursor = (coll.find(query, self.projection).sort([(cf, 1), ("_id", 1)])
                      .batch_size(self.batch_size))
            stream = stream_name(target, single)
            docs: list[Any] = []
            try:
                async for doc in cursor:
                    docs.append(doc)
                    if len(docs) >= self.batch_size:
                        batch = self._admit(wm, docs, stream)
                        states[key] = encode_value(wm.to_state())
                        batch.position = {"mode": "incremental", "streams": dict(states)}
                        yield batch
                        docs = []
            finally:
                await cursor.close()
            batch = self._admit(wm, docs, stream)
            states[key] = encode_value(wm.to_state())
            batch.position = {"mode": "incremental", "streams": dict(states)}
            yield batch

    def _admit(self, wm: Watermark, docs: list[Any], stream: str) -> Batch:
        cf = self.cursor_field or ""
        proxies = [{"c": get_path(d, cf), "k": encode_value(d["_id"]), "i": i}
                   for i, d in enumerate(docs)]
        admitted = wm.admit(proxies)
        rows = [to_row(docs[p["i"]], self.flatten, self.max_depth) for p in admitted]
        return Batch(rows, stream=stream)
