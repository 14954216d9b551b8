"""Transfers as programs in every language (Node.js with pg/mysql2 and with Knex), PostgreSQL ->
MariaDB and back: batches in transactions, upsert on the key, a position printed on exit that
resumes the copy, a failed batch reported with the last committed position."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from etlsync.codegen import generate_files, write_files
from tests.codegen import harness
from tests.codegen.conftest import need_toolchain

pytestmark = pytest.mark.integration


async def _rows(dialect: str, where: Any, table: str) -> list[tuple[Any, ...]]:
    if dialect == "postgres":
        import asyncpg

        conn = await asyncpg.connect(where)
        try:
            return [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY id")]
        finally:
            await conn.close()
    import aiomysql

    conn = await aiomysql.connect(autocommit=True, **where)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"SELECT * FROM {table} ORDER BY id")
            return list(await cur.fetchall())
    finally:
        conn.close()


TRANSFER_CASES = [(lang, source) for lang in ("go", "python", "java", "node", "knex")
                  for source in ("postgres", "mysql")]


AUTHOR_TYPES = ["int64", "text", "text", "date", "float64", "bool", "int32", "decimal", "json",
                "bytes", "uuid", "timestamp", "timestamptz", "time"]


def _normal(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [[harness.normal(v, t) for v, t in zip(r, AUTHOR_TYPES, strict=True)] for r in rows]


async def _execute(dialect: str, where: Any, sql: str) -> None:
    if dialect == "postgres":
        import asyncpg

        conn = await asyncpg.connect(where)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
        return
    import aiomysql

    conn = await aiomysql.connect(autocommit=True, **where)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
    finally:
        conn.close()


@pytest.mark.parametrize("lang, source", TRANSFER_CASES)
async def test_transfer_program_copies_in_batches_and_resumes(
        lang: str, source: str, tmp_path: Path, unique_name: str, pg_dsn: str,
        mysql_params: dict[str, Any], mysql_url: str) -> None:
    """``knex`` is Node.js with ``node_driver="knex"``."""
    need_toolchain("node" if lang == "knex" else lang)
    sink = "mysql" if source == "postgres" else "postgres"
    where = {"postgres": pg_dsn, "mysql": mysql_params}
    urls = {"postgres": f"{pg_dsn}?sslmode=disable", "mysql": mysql_url}
    tables = harness.names(unique_name)
    await harness.create_pg(pg_dsn, tables)
    await harness.create_mysql(mysql_params, tables)
    try:
        files = await generate_files("transfers.sql", "node" if lang == "knex" else lang,
                                     dialect="postgres", target=source, sink_dialect=sink,
                                     database_url=urls[source], package="gen",
                                     node_driver="knex" if lang == "knex" else "plain",
                                     text=harness.sql_file("transfers.sql", tables))
        src = tmp_path / "src"
        write_files(files, src)
        cmd, env = harness.build_program(lang, src, tmp_path, "CopyBooks")
        env |= {"SOURCE_URL": urls[source], "TARGET_URL": urls[sink]}

        def run(*args: str, code: int = 0) -> dict[str, Any]:
            proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
            assert proc.returncode == code, proc.stdout + proc.stderr
            report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            return report

        first = run("--max-batches", "1")
        assert first == {"position": ["2"], "rows": 2, "batches": 1}
        assert [r[0] for r in await _rows(sink, where[sink], tables["books_copy"])] == [1, 2]
        rest = run("--after", *first["position"])
        assert rest == {"position": ["3"], "rows": 1, "batches": 1}
        again = run()  # from the start: upserts, no duplicate keys
        assert again == {"position": ["3"], "rows": 3, "batches": 2}
        copied = await _rows(sink, where[sink], tables["books_copy"])
        original = await _rows(source, where[source], tables["books"])
        assert [tuple(map(str, r)) for r in copied] == [tuple(map(str, r)) for r in original]
        # a batch the target rejects (its second row) is rolled back whole, and the report
        # keeps the last committed position: here the start
        copy_table = tables["books_copy"]
        await _execute(sink, where[sink], f"DELETE FROM {copy_table}")
        await _execute(sink, where[sink], f"ALTER TABLE {copy_table} ADD CONSTRAINT "
                                          f"{copy_table}_no2 CHECK (id <> 2)")
        failed = run(code=1)
        assert (failed["position"], failed["rows"], failed["batches"]) == ([], 0, 0)
        assert failed["error"] and "@" not in failed["error"]  # no URL (with its user) in it
        assert await _rows(sink, where[sink], copy_table) == []
        assert run("--after", "2") == {"position": ["3"], "rows": 1, "batches": 1}
        # every type of the suite, copied across: the same values arrive
        cmd, env = harness.build_program(lang, src, tmp_path, "CopyAuthors")
        env |= {"SOURCE_URL": urls[source], "TARGET_URL": urls[sink]}
        assert run() == {"position": ["3"], "rows": 3, "batches": 2}
        copied = await _rows(sink, where[sink], tables["authors_copy"])
        original = await _rows(source, where[source], tables["authors"])
        assert _normal(copied) == _normal(original)
    finally:
        await harness.drop("postgres", pg_dsn, tables)
        await harness.drop("mysql", mysql_params, tables)
