"""PostgreSQL connector: snapshot and incremental source, bulk sink with every write mode, a
transactional checkpoint store, the CSV pass-through fast path, and CDC over logical replication
(:class:`PostgresCdcSource`). Needs ``etlsync[postgres]`` (asyncpg), imported on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etlsync.core.lazy import lazy_attributes

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_attributes(__name__, {
    "CopyResult": "etlsync.connectors.postgres.passthrough",
    "PgConnectionConfig": "etlsync.connectors.postgres.connection",
    "PostgresCdcSource": "etlsync.connectors.postgres.cdc",
    "PostgresCheckpointStore": "etlsync.connectors.postgres.checkpoint",
    "PostgresSink": "etlsync.connectors.postgres.sink",
    "PostgresSource": "etlsync.connectors.postgres.source",
    "UNCHANGED": "etlsync.connectors.postgres.types",
    "copy_csv_file": "etlsync.connectors.postgres.passthrough",
    "pass_through_eligible": "etlsync.connectors.postgres.passthrough",
    "qualified": "etlsync.connectors.postgres.connection",
    "quote_ident": "etlsync.connectors.postgres.connection",
    "run_pass_through": "etlsync.connectors.postgres.passthrough",
})

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
