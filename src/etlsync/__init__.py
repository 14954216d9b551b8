"""etlsync: real-time ETL and change-data-capture pipelines in pure asyncio.

A pipeline joins one :class:`Source`, any :class:`Operator` s and one or more
:class:`Sink` s with bounded channels::

    summary = await Pipeline(source, [Map(fn)], [sink]).run()
"""

from etlsync.core.batch import Batch, Op, Row
from etlsync.core.channel import Channel
from etlsync.core.checkpoint import CheckpointStore, MemoryCheckpointStore
from etlsync.core.errors import (
    ConfigError,
    ConflictError,
    DataError,
    EtlsyncError,
    SchemaError,
    ServiceNotReady,
    StageError,
)
from etlsync.core.incremental import Watermark
from etlsync.core.metrics import RunSummary, StageMetrics
from etlsync.core.modes import ConflictStrategy, SchemaPolicy, SyncMode, WriteMode
from etlsync.core.pipeline import Pipeline
from etlsync.core.routing import RoutingSink
from etlsync.core.run import StateInterval
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Operator, Sink, Source, StageContext
from etlsync.operators import Filter, Map, MapBatch

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Channel",
    "CheckpointStore",
    "Column",
    "ColumnType",
    "ConfigError",
    "ConflictError",
    "ConflictStrategy",
    "DataError",
    "EtlsyncError",
    "Filter",
    "Map",
    "MapBatch",
    "MemoryCheckpointStore",
    "Op",
    "Operator",
    "Pipeline",
    "RoutingSink",
    "Row",
    "RunSummary",
    "Schema",
    "SchemaError",
    "SchemaPolicy",
    "ServiceNotReady",
    "Sink",
    "Source",
    "StageContext",
    "StageError",
    "StageMetrics",
    "StateInterval",
    "SyncMode",
    "Watermark",
    "WriteMode",
]
