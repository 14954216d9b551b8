"""The CSV pass-through fast path: bytes go straight into COPY; the server parses them."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from etlsync import ConfigError
from etlsync.connectors.postgres import copy_csv_file

pytestmark = pytest.mark.integration


async def test_passthrough_loads_quoted_fields_nulls_and_resumes_by_offset(
        pg_dsn: str, conn: asyncpg.Connection, table: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    body = "".join(f'{i},"a, ""{i}""\nb",{"" if i % 5 == 0 else i * 1.5}\n' for i in range(2000))
    path.write_text("id,label,amount\n" + body)
    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, label text, amount numeric)')
    first = await copy_csv_file(path, pg_dsn, table=table, pipeline=table, chunk_bytes=4096)
    assert first.rows == 2000 and first.chunks > 5
    row = await conn.fetchrow(f'SELECT * FROM "{table}" WHERE id = 7')
    assert row is not None and row["label"] == 'a, "7"\nb' and float(row["amount"]) == 10.5
    assert await conn.fetchval(f'SELECT count(*) FROM "{table}" WHERE amount IS NULL') == 400
    again = await copy_csv_file(path, pg_dsn, table=table, pipeline=table, chunk_bytes=4096)
    assert again.rows == 0 and again.start_offset == path.stat().st_size


async def test_passthrough_without_pipeline_is_one_transaction(
        pg_dsn: str, conn: asyncpg.Connection, table: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id\n1\n2\nnot-a-number\n")
    await conn.execute(f'CREATE TABLE "{table}" (id int)')
    with pytest.raises(asyncpg.DataError):
        await copy_csv_file(path, pg_dsn, table=table)
    assert await conn.fetchval(f'SELECT count(*) FROM "{table}"') == 0
    with pytest.raises(ConfigError, match="cannot be read"):
        await copy_csv_file(tmp_path / "missing.csv", pg_dsn, table=table)


async def test_job_hook_loads_a_csv_source_glob_without_python_rows(
        pg_dsn: str, conn: asyncpg.Connection, table: str, tmp_path: Path) -> None:
    from etlsync.connectors.files import CsvSource
    from etlsync.connectors.postgres import (
        PostgresSink,
        pass_through_eligible,
        run_pass_through,
    )
    from etlsync.operators import Cast

    for part in range(3):
        (tmp_path / f"part{part}.csv").write_text(
            "id,v\n" + "".join(f"{part * 100 + i},x{i}\n" for i in range(100)))
    await conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, v text)')
    source = CsvSource(str(tmp_path / "*.csv"))
    sink = PostgresSink(pg_dsn, table=table)
    assert pass_through_eligible(source, [], [sink])
    assert not pass_through_eligible(source, [Cast({"id": "integer"})], [sink])
    assert not pass_through_eligible(source, [], [PostgresSink(pg_dsn, table=table,
                                                               write_mode="upsert")])
    first = await run_pass_through(source, sink, pipeline=table)
    assert first.rows == 300
    assert await conn.fetchval(f'SELECT count(*) FROM "{table}"') == 300
    again = await run_pass_through(source, sink, pipeline=table)
    assert again.rows == 0  # resumed after the last loaded chunk: nothing twice
