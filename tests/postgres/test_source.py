"""PostgresSource against the real server: chunked resumable snapshots, incremental reads with
ties, schema discovery, parallel tables."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from etlsync import Batch, ColumnType, ConfigError
from etlsync.connectors.postgres import PostgresSource


async def drain(source: PostgresSource, position: Any = None) -> list[Batch]:
    return [b async for b in source.read(position)]


@pytest.mark.integration
async def test_discover_reads_columns_types_nullability_and_composite_key(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (region text, id bigint, amount numeric(12,2) '
                       "NOT NULL, at timestamptz, doc jsonb, PRIMARY KEY (region, id))")
    schema = (await PostgresSource(pg_dsn, table=table).discover())[table]
    assert schema.primary_key == ("region", "id")
    assert [(c.name, c.type, c.nullable) for c in schema.columns] == [
        ("region", ColumnType.STRING, False), ("id", ColumnType.INTEGER, False),
        ("amount", ColumnType.DECIMAL, False), ("at", ColumnType.TIMESTAMP, True),
        ("doc", ColumnType.JSON, True)]
    assert schema.column("amount").native == "numeric(12,2)"


@pytest.mark.integration
async def test_snapshot_pages_by_composite_key_in_bounded_chunks(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (a int, b text, v jsonb, PRIMARY KEY (a, b))')
    await conn.execute(f"INSERT INTO \"{table}\" SELECT i % 7, 'k' || i, "
                       "jsonb_build_object('i', i) FROM generate_series(1, 1000) i")
    batches = await drain(PostgresSource(pg_dsn, table=table, batch_size=64))
    assert max(len(b) for b in batches) == 64
    rows = [r for b in batches for r in b.rows]
    assert len(rows) == 1000
    assert [(r["a"], r["b"]) for r in rows] == sorted((r["a"], r["b"]) for r in rows)
    assert rows[0]["v"] == {"i": int(rows[0]["b"][1:])}
    assert batches[-1].position["streams"][table]["done"] is True


@pytest.mark.integration
async def test_table_without_primary_key_pages_by_ctid(pg_dsn: str, conn: asyncpg.Connection,
                                                       table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (v int)')
    await conn.execute(f'INSERT INTO "{table}" SELECT 1 FROM generate_series(1, 250)')
    batches = await drain(PostgresSource(pg_dsn, table=table, batch_size=100))
    assert [len(b) for b in batches] == [100, 100, 50, 0]  # the last marks the pass's end
    assert batches[-1].end_of_pass
    resumed = await drain(PostgresSource(pg_dsn, table=table, batch_size=100),
                          batches[0].position)
    assert sum(len(b) for b in resumed) == 150
    src = PostgresSource(pg_dsn, table=table, batch_size=100)
    again = await drain(src, src.next_pass(batches[-1].position))
    assert sum(len(b) for b in again) == 250  # a full refresh starts a new pass


@pytest.mark.integration
async def test_incremental_reads_above_watermark_and_handles_ties(
        pg_dsn: str, conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, ts int)')
    await conn.execute(f'INSERT INTO "{table}" SELECT i, i / 10 FROM generate_series(1, 95) i')
    src = PostgresSource(pg_dsn, table=table, sync_mode="incremental", cursor_field="ts",
                         batch_size=4)  # tie groups of 10 are larger than a batch
    first = await drain(src)
    assert sorted(r["id"] for b in first for r in b.rows) == list(range(1, 96))
    pos = first[-1].position
    assert pos["streams"][table]["wm"]["cursor"] == 9
    # rows committed later at the watermark's value, and above it; one below (never read)
    await conn.execute(f'INSERT INTO "{table}" VALUES (200, 9), (201, 10), (202, 3)')
    second = await drain(src, pos)
    assert sorted(r["id"] for b in second for r in b.rows) == [200, 201]
    third = await drain(src, second[-1].position)
    assert [r for b in third for r in b.rows] == []


@pytest.mark.integration
async def test_incremental_query_pushes_predicate_down(pg_dsn: str, conn: asyncpg.Connection,
                                                       table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, ts int)')
    await conn.execute(f'CREATE INDEX ON "{table}" (ts, id)')
    await conn.execute(f'INSERT INTO "{table}" SELECT i, i FROM generate_series(1, 20000) i')
    await conn.execute(f'ANALYZE "{table}"')
    src = PostgresSource(pg_dsn, table=table, sync_mode="incremental", cursor_field="ts",
                         batch_size=1000)
    pos = {"streams": {table: {"wm": {"cursor": 19990, "keys": [19990]}}}}
    got = [r["id"] for b in await drain(src, pos) for r in b.rows]
    assert got == list(range(19991, 20001))
    stats = await conn.fetchrow("SELECT seq_scan, idx_tup_fetch FROM pg_stat_user_tables "
                                "WHERE relname = $1", table)
    assert stats is not None and stats["seq_scan"] in (0, None)


@pytest.mark.integration
async def test_parallel_tables_are_bounded_by_pool_size(pg_dsn: str, conn: asyncpg.Connection,
                                                        table: str) -> None:
    names = [table, f"{table}_b", f"{table}_c"]
    for i, t in enumerate(names):
        await conn.execute(f'CREATE TABLE "{t}" (id int PRIMARY KEY)')
        await conn.execute(f'INSERT INTO "{t}" SELECT g FROM generate_series(1, {300 * (i + 1)}) g')
    src = PostgresSource(pg_dsn, tables=names, batch_size=50, pool_size=2,
                         application_name=table)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            n = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE "
                                    "application_name = $1", table)
            peak = max(peak, n)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    batches = []
    async for b in src.read(None):
        batches.append(b)
        await asyncio.sleep(0.002)
    watcher.cancel()
    counts = {t: sum(len(b) for b in batches if b.stream == t) for t in names}
    assert counts == {names[0]: 300, names[1]: 600, names[2]: 900}
    final = batches[-1].position["streams"]
    assert all(final[t]["done"] for t in names)
    assert 1 <= peak <= 2


@pytest.mark.integration
async def test_query_stream_with_key_is_resumable(pg_dsn: str, conn: asyncpg.Connection,
                                                  table: str) -> None:
    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, v int)')
    await conn.execute(f'INSERT INTO "{table}" SELECT i, i * 2 FROM generate_series(1, 30) i')
    src = PostgresSource(pg_dsn, query=f'SELECT id, v FROM "{table}" WHERE v > 10',
                         primary_key=["id"], batch_size=10, stream="q")
    batches = await drain(src)
    assert sum(len(b) for b in batches) == 25
    rest = await drain(src, batches[0].position)
    assert [r["id"] for b in rest for r in b.rows] == list(range(16, 31))


def test_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="cursor_field"):
        PostgresSource("postgresql://x@h/d", table="t", sync_mode="incremental")
    with pytest.raises(ConfigError, match="exactly one"):
        PostgresSource("postgresql://x@h/d")
