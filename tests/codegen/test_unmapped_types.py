"""Types the generators do not map (PostgreSQL intervals and arrays) are read as the language's
string type in every language: PostgreSQL's own text form in Go, Java and Node.js, ``str()`` of
the driver's value in Python (psycopg parses them first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from etlsync.codegen import generate_files, write_files
from tests.codegen import harness
from tests.codegen.conftest import need_toolchain

pytestmark = pytest.mark.integration

QUERY = """-- name: Spans :many
SELECT id, id * interval '1 hour' AS span, ARRAY[id, id * 10] AS pair FROM {authors} ORDER BY id;
"""


@pytest.mark.parametrize("lang", ["python", "go", "java", "node"])
async def test_unmapped_columns_are_read_as_text(lang: str, tmp_path: Path, unique_name: str,
                                                 pg_dsn: str) -> None:
    import asyncpg

    need_toolchain(lang)
    url = f"{pg_dsn}?sslmode=disable"
    tables = harness.names(unique_name)
    text = harness.fill(QUERY, tables)
    await harness.create_pg(pg_dsn, tables)
    try:
        files = await generate_files("spans.sql", lang, database_url=url, package="gen", main=True,
                                     text=text)
        assert "SQL type interval" in next(v for k, v in files.items() if "ueries" in k)
        src = tmp_path / "src"
        write_files(files, src)
        got = harness.run_runner(lang, harness.build(lang, src, tmp_path), src, url, "Spans\n")
        conn = await asyncpg.connect(pg_dsn)
        try:
            sql = text.split("\n", 1)[1].rstrip().rstrip(";")
            expected = [dict(r) for r in await conn.fetch(
                f"SELECT id, span::text AS span, pair::text AS pair FROM ({sql}) s")]
        finally:
            await conn.close()
        assert [int(r["id"]) for r in got[0]] == [1, 2, 3]
        for row, exp in zip(got[0], expected, strict=True):
            assert isinstance(row["span"], str) and isinstance(row["pair"], str), row
            if lang != "python":
                assert (row["span"], row["pair"]) == (exp["span"], exp["pair"])
            else:  # psycopg parsed them: a timedelta and a list, as str()
                assert row["span"] == _hours(exp["span"])
                assert row["pair"] == str([int(x) for x in exp["pair"].strip("{}").split(",")])
    finally:
        await harness.drop("postgres", pg_dsn, tables)


def _hours(text: str) -> str:
    """PostgreSQL's '01:00:00' as Python prints the timedelta psycopg reads."""
    import datetime as dt

    h, m, s = (int(x) for x in text.split(":"))
    return str(dt.timedelta(hours=h, minutes=m, seconds=s))
