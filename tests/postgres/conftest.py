"""Fixtures for the PostgreSQL connector tests: a connection and tables that are dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from etlsync.connectors.postgres import qualified
from etlsync.connectors.postgres.checkpoint import ensure_state_table


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(pg_dsn)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def table(conn: asyncpg.Connection, unique_name: str) -> AsyncIterator[str]:
    """A fresh table name; the table, its overwrite twin and its state row are dropped after."""
    await ensure_state_table(conn, "public", "_etlsync_state")
    yield unique_name
    for t in (unique_name, f"{unique_name}__etlsync_new", f"{unique_name}_b", f"{unique_name}_c"):
        await conn.execute(f"DROP TABLE IF EXISTS {qualified('public', t)}")
    await conn.execute("DELETE FROM public._etlsync_state WHERE pipeline LIKE $1",
                       f"{unique_name}%")
