"""MongoDB connector: collection reads, a bulk-writing sink, and CDC from change streams or
the oplog. Uses PyMongo's native asyncio API (``AsyncMongoClient``); install
``etlsync[mongo]``."""

from __future__ import annotations

from etlsync.connectors.mongo.cdc import ChangeStreamHistoryLost, ChangeStreamInvalidated
from etlsync.connectors.mongo.changestream import MongoChangeStreamSource
from etlsync.connectors.mongo.checkpoint import MongoCheckpointStore
from etlsync.connectors.mongo.connection import MongoConnection
from etlsync.connectors.mongo.convert import Flatten, to_row, unflatten
from etlsync.connectors.mongo.oplog import MongoOplogSource
from etlsync.connectors.mongo.sink import MongoSink
from etlsync.connectors.mongo.source import MongoSource

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
