"""The MongoDB checkpoint store: one document per pipeline in a state collection, which
:class:`MongoSink` (with ``state_collection``) also writes inside each batch's
multi-document transaction (its ``checkpoint_store()`` is this store)."""

from __future__ import annotations

import time
from typing import Any

from etlsync.connectors.mongo.connection import MongoConnection, as_connection
from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.errors import ConfigError

DEFAULT_STATE_COLLECTION = "_etlsync_state"


async def write_checkpoint(coll: Any, pipeline: str, checkpoint: Checkpoint, *,
                           session: Any = None) -> None:
    """Upsert ``pipeline``'s checkpoint (codec-encoded JSON) into a state collection."""
    await coll.replace_one(
        {"_id": pipeline},
        {"_id": pipeline, "position": checkpoint.encode().decode(), "updated_at": time.time()},
        upsert=True, session=session)


def _hosts(connection: MongoConnection) -> str | None:
    """The host list of the connection's URI, without credentials or options."""
    try:
        uri = connection.resolve_uri()
    except ConfigError:
        return None
    rest = uri.split("://", 1)[-1]
    return rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]


class MongoCheckpointStore(CheckpointStore):
    """Pipeline checkpoints in a MongoDB collection (one document per pipeline); ``commit``
    is a single-document upsert, hence atomic."""

    def __init__(self, connection: MongoConnection | str | None = None, *, database: str,
                 collection: str = DEFAULT_STATE_COLLECTION) -> None:
        self.connection = as_connection(connection)
        self.database = database
        self.collection = collection
        hosts = _hosts(self.connection)
        self.location = None if hosts is None else f"mongo://{hosts}/{database}#{collection}"
        self._client: Any = None

    def _coll(self) -> Any:
        if self._client is None:
            self._client = self.connection.client()
        return self._client[self.database][self.collection]

    async def load(self, pipeline: str) -> Checkpoint | None:
        doc = await self._coll().find_one({"_id": pipeline})
        return None if doc is None else Checkpoint.decode(doc["position"])

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        await write_checkpoint(self._coll(), pipeline, checkpoint)

    async def reset(self, pipeline: str) -> None:
        await self._coll().delete_one({"_id": pipeline})

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
