"""Fixtures for the PostgreSQL CDC tests: a connection, and names that are cleaned up
(slots are always dropped: a leftover slot retains WAL forever)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from etlsync.core.batch import Batch, Op


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


class Names:
    """A table, slot and publication named after one ``unique_name``; ``cleanup`` drops
    every slot, publication and table registered."""

    def __init__(self, base: str) -> None:
        self.table = base
        self.slot = f"{base}_slot"
        self.publication = f"{base}_pub"
        self.slots = [self.slot]
        self.publications = [self.publication]
        self.tables = [self.table]
        self.types: list[tuple[str, str]] = []
        """``(TYPE or DOMAIN, name)``, dropped after the tables."""

    async def cleanup(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for slot in self.slots:
                for _ in range(50):
                    try:
                        await conn.execute(
                            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                            "WHERE slot_name = $1", slot)
                        break
                    except asyncpg.ObjectInUseError:  # a reader of this test still holds it
                        await conn.execute(
                            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                            "WHERE slot_name = $1 AND active_pid IS NOT NULL", slot)
                        await asyncio.sleep(0.1)
            for pub in self.publications:
                await conn.execute(f"DROP PUBLICATION IF EXISTS {_quote(pub)}")
            for table in self.tables:
                await conn.execute(f"DROP TABLE IF EXISTS {_quote(table)} CASCADE")
            for kind, name in self.types:
                await conn.execute(f"DROP {kind} IF EXISTS {_quote(name)} CASCADE")
        finally:
            await conn.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture
async def names(unique_name: str, pg_dsn: str) -> AsyncIterator[Names]:
    n = Names(unique_name)
    yield n
    await n.cleanup(pg_dsn)


async def take(agen: Any, until: Callable[[list[Batch]], bool], timeout: float = 20.0
               ) -> list[Batch]:
    """Read batches from a source generator until ``until(batches)`` holds."""
    got: list[Batch] = []

    async def run() -> None:
        while not until(got):
            got.append(await agen.__anext__())

    await asyncio.wait_for(run(), timeout)
    return got


def apply(state: dict[Any, dict[str, Any]], batches: list[Batch], key: tuple[str, ...],
          stream: str | None = None) -> None:
    """Apply batches to an in-memory table keyed by ``key`` (a model of an upsert sink)."""
    for b in batches:
        if stream is not None and b.stream != stream:
            continue
        for i, (op, row) in enumerate(b.iter_changes()):
            if op is Op.TRUNCATE:
                state.clear()
                continue
            k = tuple(row[c] for c in key)
            if op is Op.DELETE:
                state.pop(k, None)
            elif op is Op.INSERT:
                state[k] = dict(row)
            else:
                old = b.before[i] if b.before else None
                if old is not None:
                    ok = tuple(old.get(c) for c in key)
                    if ok != k:
                        state.pop(ok, None)
                merged = dict(state.get(k, {}))
                from etlsync.connectors.postgres.types import UNCHANGED
                merged.update({c: v for c, v in row.items() if v is not UNCHANGED})
                state[k] = merged


async def wait_streaming(conn: asyncpg.Connection, slot: str, timeout: float = 60.0) -> None:
    """Wait until a reader streams from ``slot``. Creating a slot waits for every running
    transaction of the cluster, so under load it can take seconds: changes made before the
    slot exists are not in it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await conn.fetchval("SELECT count(*) FROM pg_replication_slots "
                               "WHERE slot_name = $1 AND active", slot):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no reader on slot {slot!r} after {timeout} s")
