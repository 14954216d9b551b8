"""Dirty rows against a real PostgreSQL target: server-side constraint and type errors are
classified as bad data, isolated by bisection and dead-lettered in a PostgreSQL table."""

from __future__ import annotations

from typing import Any

import pytest

from etlsync import Pipeline
from etlsync.resilience import PostgresDeadLetterSink, Resilient
from etlsync.testing import MemorySource

pytestmark = pytest.mark.integration


def rows(n: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
    out, bad = [], {}
    for i in range(n):
        r: dict[str, Any] = {"id": i, "amount": i % 500, "note": f"n{i}"}
        if i % 131 == 5:
            r["amount"] = None
            bad[i] = "NotNullViolationError"
        elif i % 149 == 9:
            r["amount"] = -3
            bad[i] = "CheckViolationError"
        elif i % 163 == 11:
            r["amount"] = 10**7
            bad[i] = "NumericValueOutOfRangeError"
        elif i % 173 == 17:
            r["amount"] = "twelve"
            bad[i] = "DataError|InvalidOperation"  # asyncpg or the sink's own conversion
        out.append(r)
    return out, bad


async def test_postgres_rejects_are_dead_lettered(pg_dsn: str, unique_name: str) -> None:
    import asyncpg

    from etlsync.connectors.postgres import PostgresSink

    table, letters_table = unique_name, f"{unique_name}_dead"
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f'create table "{table}" (id bigint primary key, '
                       "amount numeric(7,2) not null check (amount >= 0), note text)")
    try:
        data, bad = rows(2000)
        dlq = PostgresDeadLetterSink(pg_dsn, letters_table)
        sink = Resilient(PostgresSink(pg_dsn, table=table, create=False, exactly_once=False),
                         on_bad_data="dead_letter", dead_letter=dlq)
        await Pipeline(MemorySource(data, 250), sinks=[sink], name=unique_name).run()
        stored = [r["id"] for r in await conn.fetch(f'select id from "{table}" order by id')]
        assert stored == [i for i in range(2000) if i not in bad]
        got = await conn.fetch(f'select "row"::text, "error_type", "error", "stage", "kind" '
                               f'from "{letters_table}" order by "id"')
        reader = PostgresDeadLetterSink(pg_dsn, letters_table)
        letters = [x async for x in reader.read()]
        await reader.close()
        assert [x.row["id"] for x in letters] == sorted(bad)
        for x in letters:
            assert x.error_type in bad[x.row["id"]].split("|"), (x.row, x.error)
            assert x.kind == "bad_data" and x.error and x.stage == "sink:postgres"
        assert len(got) == len(bad)
    finally:
        await conn.execute(f'drop table if exists "{table}", "{letters_table}"')
        await conn.close()
