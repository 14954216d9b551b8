"""MySQL/MariaDB connector: table snapshots and incremental reads (:class:`MysqlSource`),
binlog change data capture (:class:`MysqlCdcSource`), a transactional sink
(:class:`MysqlSink`) and a checkpoint store (:class:`MysqlCheckpointStore`).

Needs the ``mysql`` extra (``aiomysql`` pinned: the binlog reader uses its packet layer),
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from etlsync.core.lazy import lazy_attributes

if TYPE_CHECKING:
    from etlsync.connectors.mysql.cdc import MysqlCdcSource
    from etlsync.connectors.mysql.checkpoint import MysqlCheckpointStore
    from etlsync.connectors.mysql.config import MysqlOptions
    from etlsync.connectors.mysql.sink import MysqlSink
    from etlsync.connectors.mysql.source import MysqlSource

__getattr__, __dir__ = lazy_attributes(__name__, {
    "MysqlCdcSource": "etlsync.connectors.mysql.cdc",
    "MysqlCheckpointStore": "etlsync.connectors.mysql.checkpoint",
    "MysqlOptions": "etlsync.connectors.mysql.config",
    "MysqlSink": "etlsync.connectors.mysql.sink",
    "MysqlSource": "etlsync.connectors.mysql.source",
})

__all__ = [
    "MysqlCdcSource",
    "MysqlCheckpointStore",
    "MysqlOptions",
    "MysqlSink",
    "MysqlSource",
]
