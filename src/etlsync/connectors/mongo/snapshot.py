"""Chunked, resumable reads of whole collections ordered by ``_id`` (used by the full-refresh
source and by the CDC sources' initial snapshot)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from pymongo.errors import CursorNotFound

from etlsync.connectors.mongo.convert import (
    Flatten,
    decode_value,
    encode_value,
    infer_schema,
    to_row,
)
from etlsync.core.batch import Batch, Row
from etlsync.core.errors import ConfigError
from etlsync.core.schema import Schema

Target = tuple[str, str]
"""(database, collection)."""

SYSTEM_DATABASES = frozenset({"admin", "local", "config"})


def as_projection(projection: Mapping[str, Any] | Sequence[str] | None,
                  required: Sequence[str] = ("_id",)) -> dict[str, Any] | None:
    """A find() projection from a list of fields or a projection document; ``required``
    fields are always included in an inclusion projection."""
    if projection is None:
        return None
    if isinstance(projection, Mapping):
        proj = dict(projection)
        inclusive = any(v not in (0, False) for k, v in proj.items() if k != "_id")
        if inclusive:
            for f in required:
                if f != "_id":
                    proj[f] = 1
        if proj.get("_id") in (0, False):
            raise ConfigError("the projection must keep _id: rows are keyed by it")
        return proj
    if isinstance(projection, str):
        raise ConfigError("projection must be a list of field names or a projection document")
    proj = {f: 1 for f in projection}
    for f in required:
        proj[f] = 1
    return proj


async def list_targets(client: Any, database: str | None,
                       collections: Sequence[str] | None) -> list[Target]:
    """The collections a source reads: those named, or every non-system collection of
    ``database`` (of every user database when ``database`` is ``None``)."""
    if database is not None and collections:
        return [(database, c) for c in collections]
    if collections:
        out: list[Target] = []
        for c in collections:
            if "." not in c:
                raise ConfigError(f"collection {c!r}: without database= name it as 'db.collection'")
            db, _, coll = c.partition(".")
            out.append((db, coll))
        return out
    dbs = [database] if database is not None else [
        d for d in await client.list_database_names() if d not in SYSTEM_DATABASES]
    targets: list[Target] = []
    for db in dbs:
        names = await client[db].list_collection_names(filter={"type": "collection"})
        targets.extend((db, c) for c in sorted(names) if not c.startswith("system."))
    return targets


def stream_name(target: Target, single_db: bool) -> str:
    """A collection's stream name: ``coll`` within one database, ``db.coll`` otherwise."""
    return target[1] if single_db else f"{target[0]}.{target[1]}"


class Snapshotter:
    """Reads collections in ``_id`` order, ``chunk_size`` documents per batch.

    The state (``{"db.coll": {"last_id": bytes|None, "done": bool}}``) says where each
    collection's read stands, so a resumed read continues mid-collection. ``_id`` values of
    one collection must share a BSON type (numbers count as one): ``$gt`` brackets by type.
    """

    def __init__(self, client: Any, targets: Sequence[Target], *, single_db: bool,
                 chunk_size: int, flatten: Flatten, max_depth: int,
                 projection: dict[str, Any] | None, query: Mapping[str, Any] | None) -> None:
        self.client = client
        self.targets = list(targets)
        self.single_db = single_db
        self.chunk_size = chunk_size
        self.flatten = flatten
        self.max_depth = max_depth
        self.projection = projection
        self.query = dict(query or {})

    async def read(self, state: dict[str, Any]) -> AsyncIterator[tuple[Batch, dict[str, Any]]]:
        """Yield ``(batch, state_after_batch)``; ``state`` is not mutated."""
        state = {k: dict(v) for k, v in state.items()}
        for target in self.targets:
            key = f"{target[0]}.{target[1]}"
            st = state.setdefault(key, {"last_id": None, "done": False})
            if st["done"]:
                continue
            stream = stream_name(target, self.single_db)
            coll = self.client[target[0]][target[1]]
            query = dict(self.query)
            if st["last_id"] is not None:
                query["_id"] = {"$gt": decode_value(st["last_id"])}
            cursor = self._find(coll, query)
            try:
                while True:
                    try:
                        docs = await cursor.to_list(self.chunk_size)
                    except CursorNotFound:
                        # the server dropped the cursor while the pipeline was slow (idle
                        # cursors time out): reopen after the last _id read
                        await cursor.close()
                        if st["last_id"] is not None:
                            query["_id"] = {"$gt": decode_value(st["last_id"])}
                        cursor = self._find(coll, query)
                        continue
                    if len(docs) < self.chunk_size:
                        break
                    st["last_id"] = encode_value(docs[-1]["_id"])
                    yield self._batch(docs, stream), _copy(state)
            finally:
                await cursor.close()
            if docs:
                st["last_id"] = encode_value(docs[-1]["_id"])
            st["done"] = True
            yield self._batch(docs, stream), _copy(state)

    def _find(self, coll: Any, query: dict[str, Any]) -> Any:
        return coll.find(query, self.projection).sort("_id", 1).batch_size(self.chunk_size)

    def _batch(self, docs: list[Any], stream: str) -> Batch:
        flatten, depth = self.flatten, self.max_depth
        rows: list[Row] = [to_row(d, flatten, depth, own=True) for d in docs]
        return Batch(rows, stream=stream)


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) for k, v in state.items()}


async def sample_schemas(client: Any, targets: Sequence[Target], *, single_db: bool,
                         flatten: Flatten, max_depth: int,
                         projection: dict[str, Any] | None, sample: int = 200,
                         ) -> dict[str, Schema]:
    """Schemas inferred from the first ``sample`` documents of each collection."""
    out: dict[str, Schema] = {}
    for target in targets:
        coll = client[target[0]][target[1]]
        rows = [to_row(d, flatten, max_depth)
                async for d in coll.find({}, projection).limit(sample)]
        out[stream_name(target, single_db)] = infer_schema(rows)
    return out
