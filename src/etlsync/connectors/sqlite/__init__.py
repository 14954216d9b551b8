"""SQLite: the embedded default source and target (see docs/connectors/sqlite.md)."""

from etlsync.connectors.sqlite.sink import SqliteSink
from etlsync.connectors.sqlite.source import SqliteSource, table_schema

__all__ = ["SqliteSink", "SqliteSource", "table_schema"]
