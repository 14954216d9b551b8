"""MongoSink: insert, replace and upsert by key with the conflict strategies, deletes, and
bulk writes in ordered or unordered mode."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from etlsync.connectors.mongo.checkpoint import MongoCheckpointStore, write_checkpoint
from etlsync.connectors.mongo.connection import MongoConnection, as_connection
from etlsync.connectors.mongo.convert import unflatten as unflatten_row
from etlsync.core.batch import Batch, Op, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError, ConflictError, DataError
from etlsync.core.modes import ConflictStrategy, WriteMode
from etlsync.core.options import renamed_keywords
from etlsync.core.stages import Sink, StageContext

_HEX24 = re.compile(r"^[0-9a-f]{24}$")


class MongoSink(Sink):
    """Writes batches to MongoDB collections with bulk writes; ``write`` returns once the
    server acknowledged them under the configured write concern.

    :param connection: a :class:`MongoConnection`, a URI, or ``None`` (env var).
    :param database: the target database.
    :param collection: the target collection; default the batch's stream name.
    :param write_mode: ``append`` (insert; a duplicate key fails), ``overwrite`` (empty each
        target collection on its first write of the run, then insert; not atomic), or
        ``upsert`` (by ``primary_key`` with ``conflict``).
    :param conflict: for upserts: ``skip`` (``$setOnInsert``), ``overwrite`` (replace the
        document), ``merge`` (``$set`` the fields present), ``fail`` (insert;
        :class:`~etlsync.core.errors.ConflictError` names an existing key).
    :param primary_key: the field(s) identifying a document (default ``_id``).
    :param ordered: ordered bulk writes stop at the first error; unordered ones let the
        server apply writes in any order (writes to the same key in one batch still keep
        their order: the batch is split where a key repeats).
    :param unflatten: rebuild nested documents from dotted column names.
    :param restore_object_ids: turn 24-hex-digit string ``_id`` values back into ObjectIds.
    :param write_concern: e.g. ``{"w": "majority", "j": True}``.
    :param state_collection: ``TRANSACTIONAL``: write each batch and the pipeline's
        checkpoint (in this collection of ``database``, keyed by pipeline name) in one
        multi-document transaction (needs a replica set); :meth:`checkpoint_store` reads it.

    Change batches apply their ops: inserts and updates by the rules above (an update under
    ``fail`` replaces), deletes by key, truncate empties the collection.
    """

    @renamed_keywords({"key": "primary_key"})
    def __init__(
        self,
        connection: MongoConnection | str | Mapping[str, Any] | None = None,
        *,
        database: str,
        collection: str | None = None,
        write_mode: WriteMode | str = WriteMode.UPSERT,
        conflict: ConflictStrategy | str = ConflictStrategy.OVERWRITE,
        primary_key: str | Sequence[str] = "_id",
        ordered: bool = True,
        unflatten: bool = False,
        restore_object_ids: bool = False,
        write_concern: Mapping[str, Any] | None = None,
        state_collection: str | None = None,
        name: str = "mongo",
    ) -> None:
        self.connection = as_connection(connection)
        self.database = database
        self.collection = collection
        self.write_mode = WriteMode(write_mode)
        self.conflict = ConflictStrategy(conflict)
        self.key = (primary_key,) if isinstance(primary_key, str) else tuple(primary_key)
        if not self.key:
            raise ConfigError("MongoSink primary_key must name at least one field")
        self.ordered = ordered
        self.unflatten = unflatten
        self.restore_object_ids = restore_object_ids
        self.write_concern = dict(write_concern) if write_concern else None
        self.state_collection = state_collection
        self.name = name
        self.capabilities = frozenset(
            {Capability.CHANGES, Capability.KEYED}
            | ({Capability.TRANSACTIONAL} if state_collection else set()))
        self._context: StageContext | None = None
        self._client: Any = None
        self._cleared: set[str] = set()
        self._indexed: set[str] = set()
        self.log: Any = None

    def checkpoint_store(self) -> MongoCheckpointStore | None:
        """A store reading the checkpoints this sink writes (with ``state_collection``)."""
        if not self.state_collection:
            return None
        return MongoCheckpointStore(self.connection, database=self.database,
                                    collection=self.state_collection)

    async def open(self, context: StageContext) -> None:
        self._client = self.connection.client()
        self._context = context
        self.log = context.log
        await self._client.admin.command("ping")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _coll(self, stream: str) -> Any:
        name = self.collection or stream
        if not name:
            raise ConfigError("MongoSink needs collection= for batches without a stream name")
        coll = self._client[self.database][name]
        if self.write_concern:
            from pymongo import WriteConcern

            coll = coll.with_options(write_concern=WriteConcern(**self.write_concern))
        return coll

    def _doc(self, row: Row) -> dict[str, Any]:
        doc = unflatten_row(row) if self.unflatten else dict(row)
        if self.restore_object_ids:
            v = doc.get("_id")
            if isinstance(v, str) and _HEX24.match(v):
                from bson import ObjectId

                doc["_id"] = ObjectId(v)
        return doc

    def _filter(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return {k: doc[k] for k in self.key}
        except KeyError as exc:
            raise DataError(f"row lacks key field {exc.args[0]!r}", column=str(exc.args[0]),
                            row=doc) from None

    def _upsert_op(self, op: Op, doc: dict[str, Any], flt: dict[str, Any]) -> Any:
        from pymongo import InsertOne, ReplaceOne, UpdateOne

        mode, conflict = self.write_mode, self.conflict
        if mode is not WriteMode.UPSERT and op is Op.INSERT:
            return InsertOne(doc)
        if mode is not WriteMode.UPSERT or conflict is ConflictStrategy.OVERWRITE:
            return ReplaceOne(flt, doc, upsert=True)
        if conflict is ConflictStrategy.FAIL:
            return InsertOne(doc) if op is Op.INSERT else ReplaceOne(flt, doc, upsert=True)
        if conflict is ConflictStrategy.SKIP:
            return UpdateOne(flt, {"$setOnInsert": doc}, upsert=True)
        fields = {k: v for k, v in doc.items() if k not in flt and k != "_id"}
        update = {"$set": fields} if fields else {"$setOnInsert": flt}
        if fields and "_id" in doc and "_id" not in flt:
            update["$setOnInsert"] = {"_id": doc["_id"]}
        return UpdateOne(flt, update, upsert=True)

    async def write(self, batch: Batch) -> None:
        assert self._context is not None, "MongoSink.write before open"
        checkpoint = self._context.checkpoint_for(batch) if self.state_collection else None
        if checkpoint is None:
            if len(batch):
                await self._apply(batch, None, self._cleared)
            return
        assert self.state_collection is not None
        state = self._client[self.database][self.state_collection]
        pipeline = self._context.pipeline
        cleared: set[str] = set()

        async def transaction(session: Any) -> None:
            cleared.clear()
            await self._apply(batch, session, cleared)
            await write_checkpoint(state, pipeline, checkpoint, session=session)

        # with_transaction retries a transient conflict (with back-off, up to 2 minutes):
        # after a kill -9 the dead run's transaction holds its documents until the server
        # aborts it (transactionLifetimeLimitSeconds, 60 s by default)
        async with self._client.start_session() as session:
            await session.with_transaction(transaction)
        self._cleared |= cleared

    async def _apply(self, batch: Batch, session: Any, cleared: set[str]) -> None:
        if not len(batch):
            return
        from pymongo import DeleteOne, InsertOne

        coll = self._coll(batch.stream)
        cname = coll.full_name
        if self.key != ("_id",) and cname not in self._indexed:
            # a unique index on the key: upserts find their document without a scan, and
            # append / conflict='fail' meet an existing key as a duplicate-key error
            # (outside the transaction: an index is no part of a batch)
            await coll.create_index([(k, 1) for k in self.key], unique=True)
            self._indexed.add(cname)
        if self.write_mode is WriteMode.OVERWRITE and cname not in self._cleared | cleared:
            await coll.delete_many({}, session=session)
            cleared.add(cname)  # the caller keeps it once the write committed
        pending: list[Any] = []
        keys: list[Any] = []
        before = batch.before
        for i, (op, row) in enumerate(batch.iter_changes()):
            prior = before[i] if before is not None and op is Op.UPDATE else None
            if prior:
                old = self._filter(self._doc(prior))
                if old != self._filter(self._doc(row)):  # the key moved: drop the old one
                    pending.append(DeleteOne(old))
                    keys.append(tuple(old.values()))
            if op is Op.TRUNCATE:
                await self._flush(coll, pending, keys, session)
                pending, keys = [], []
                await coll.delete_many({}, session=session)
                continue
            doc = self._doc(row)
            if op is Op.INSERT and self.write_mode is not WriteMode.UPSERT:
                pending.append(InsertOne(doc))  # appended rows need no key (_id is made)
                keys.append(tuple(doc.get(k) for k in self.key))
                continue
            flt = self._filter(doc)
            if op is Op.DELETE:
                pending.append(DeleteOne(flt))
            else:
                pending.append(self._upsert_op(op, doc, flt))
            keys.append(tuple(flt.values()))
        await self._flush(coll, pending, keys, session)

    async def _flush(self, coll: Any, ops: list[Any], keys: list[Any], session: Any) -> None:
        if not ops:
            return
        if self.ordered:
            await self._bulk(coll, ops, True, session)
            return
        start, seen = 0, set[str]()
        for i, k in enumerate(keys):
            hk = repr(k)
            if hk in seen:
                await self._bulk(coll, ops[start:i], False, session)
                start, seen = i, set()
            seen.add(hk)
        await self._bulk(coll, ops[start:], False, session)

    async def _bulk(self, coll: Any, ops: list[Any], ordered: bool, session: Any) -> None:
        from pymongo.errors import BulkWriteError

        if not ops:
            return
        try:
            await coll.bulk_write(ops, ordered=ordered, session=session)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or []
            dup = [e for e in errors if e.get("code") == 11000]
            if dup:
                first = dup[0]
                key = first.get("keyValue") or first.get("op", {}).get("_id")
                raise ConflictError(
                    f"{coll.full_name}: key {key!r} already exists "
                    f"(write_mode={self.write_mode}, conflict={self.conflict}); "
                    f"{len(dup)} conflicting write(s) in this batch") from exc
            raise
