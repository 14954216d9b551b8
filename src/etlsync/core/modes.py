"""Sync, write, conflict and schema-change modes, with Airbyte-style names.

Conflict strategies for upserts on the primary key, the same for every sink:

- ``skip``: keep the stored row; insert only keys that are absent.
- ``overwrite``: replace the stored row with the incoming one (columns absent from the
  incoming row become NULL).
- ``merge``: update only the columns present in the incoming row; others keep their values.
- ``fail``: raise :class:`~etlsync.core.errors.ConflictError` naming the key.
"""

from __future__ import annotations

from enum import StrEnum


class SyncMode(StrEnum):
    FULL_REFRESH = "full_refresh"
    INCREMENTAL = "incremental"
    CDC = "cdc"


class WriteMode(StrEnum):
    APPEND = "append"
    OVERWRITE = "overwrite"
    UPSERT = "upsert"


class ConflictStrategy(StrEnum):
    SKIP = "skip"
    OVERWRITE = "overwrite"
    MERGE = "merge"
    FAIL = "fail"


class SchemaPolicy(StrEnum):
    """What a sink does with a source column its target table lacks."""

    EVOLVE = "evolve"
    """Add the column to the target."""
    FREEZE = "freeze"
    """Fail with :class:`~etlsync.core.errors.SchemaError` naming the column."""
    DISCARD = "discard"
    """Drop the value."""
