"""PostgreSQL connector: snapshot and incremental source, bulk sink with every write mode, a
transactional checkpoint store, the CSV pass-through fast path, and CDC over logical replication
(:class:`PostgresCdcSource`). Needs ``etlsync[postgres]``
(asyncpg)."""

from etlsync.connectors.postgres.cdc import PostgresCdcSource
from etlsync.connectors.postgres.checkpoint import PostgresCheckpointStore
from etlsync.connectors.postgres.connection import PgConnectionConfig, qualified, quote_ident
from etlsync.connectors.postgres.passthrough import (
    CopyResult,
    copy_csv_file,
    pass_through_eligible,
    run_pass_through,
)
from etlsync.connectors.postgres.sink import PostgresSink
from etlsync.connectors.postgres.source import PostgresSource
from etlsync.connectors.postgres.types import UNCHANGED

__all__ = [
    "UNCHANGED",
    "CopyResult",
    "PgConnectionConfig",
    "PostgresCdcSource",
    "PostgresCheckpointStore",
    "PostgresSink",
    "PostgresSource",
    "copy_csv_file",
    "pass_through_eligible",
    "qualified",
    "quote_ident",
    "run_pass_through",
]
