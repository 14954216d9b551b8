"""The shared SQL layer: identifiers, dialects and the table-sink lifecycle that the
PostgreSQL, MySQL/MariaDB and SQLite connectors specialise."""
