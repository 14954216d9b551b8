"""MongoDB connector: collection reads, a bulk-writing sink, and CDC from change streams or
the oplog. Uses PyMongo's native asyncio API (``AsyncMongoClient``); install
``etlsync[mongo]`` (imported on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etlsync.core.lazy import lazy_attributes

if TYPE_CHECKING:
    from etlsync.connectors.mongo.cdc import ChangeStreamHistoryLost, ChangeStreamInvalidated
    from etlsync.connectors.mongo.changestream import MongoChangeStreamSource
    from etlsync.connectors.mongo.checkpoint import MongoCheckpointStore
    from etlsync.connectors.mongo.connection import MongoConnection
    from etlsync.connectors.mongo.convert import Flatten, to_row, unflatten
    from etlsync.connectors.mongo.oplog import MongoOplogSource
    from etlsync.connectors.mongo.sink import MongoSink
    from etlsync.connectors.mongo.source import MongoSource

__getattr__, __dir__ = lazy_attributes(__name__, {
    "ChangeStreamHistoryLost": "etlsync.connectors.mongo.cdc",
    "ChangeStreamInvalidated": "etlsync.connectors.mongo.cdc",
    "Flatten": "etlsync.connectors.mongo.convert",
    "MongoChangeStreamSource": "etlsync.connectors.mongo.changestream",
    "MongoCheckpointStore": "etlsync.connectors.mongo.checkpoint",
    "MongoConnection": "etlsync.connectors.mongo.connection",
    "MongoOplogSource": "etlsync.connectors.mongo.oplog",
    "MongoSink": "etlsync.connectors.mongo.sink",
    "MongoSource": "etlsync.connectors.mongo.source",
    "to_row": "etlsync.connectors.mongo.convert",
    "unflatten": "etlsync.connectors.mongo.convert",
})

__all__ = [
    "ChangeStreamHistoryLost",
    "ChangeStreamInvalidated",
    "Flatten",
    "MongoChangeStreamSource",
    "MongoCheckpointStore",
    "MongoConnection",
    "MongoOplogSource",
    "MongoSink",
    "MongoSource",
    "to_row",
    "unflatten",
]
