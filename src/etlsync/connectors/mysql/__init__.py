"""MySQL/MariaDB connector: table snapshots and incremental reads (:class:`MysqlSource`),
binlog change data capture (:class:`MysqlCdcSource`), a transactional sink
(:class:`MysqlSink`) and a checkpoint store (:class:`MysqlCheckpointStore`).

Needs the ``mysql`` extra (``aiomysql`` pinned: the binlog reader uses its packet layer).
"""

from etlsync.connectors.mysql.cdc import MysqlCdcSource
from etlsync.connectors.mysql.checkpoint import MysqlCheckpointStore
from etlsync.connectors.mysql.config import MysqlOptions
from etlsync.connectors.mysql.sink import MysqlSink
from etlsync.connectors.mysql.source import MysqlSource

__all__ = ["MysqlCdcSource", "MysqlCheckpointStore", "MysqlOptions", "MysqlSink", "MysqlSource"]
