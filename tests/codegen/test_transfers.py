"""Transfers as programs (Go: PostgreSQL -> MariaDB; Python: MariaDB -> PostgreSQL): batches in
transactions, upsert on the key, a position printed on exit that resumes the copy."""

from __future__ import annotations

import json
import os
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


@pytest.mark.parametrize("lang, source", [("go", "postgres"), ("python", "mysql")])
async def test_transfer_program_copies_in_batches_and_resumes(
        lang: str, source: str, tmp_path: Path, unique_name: str, pg_dsn: str,
        mysql_params: dict[str, Any], mysql_url: str) -> None:
    need_toolchain(lang)
    sink = "mysql" if source == "postgres" else "postgres"
    where = {"postgres": pg_dsn, "mysql": mysql_params}
    urls = {"postgres": f"{pg_dsn}?sslmode=disable", "mysql": mysql_url}
    tables = harness.names(unique_name)
    await harness.create_pg(pg_dsn, tables)
    await harness.create_mysql(mysql_params, tables)
    try:
        files = await generate_files("transfers.sql", lang, dialect="postgres", target=source,
                                     sink_dialect=sink, database_url=urls[source],
                                     text=harness.sql_file("transfers.sql", tables))
        src = tmp_path / "src"
        write_files(files, src)
        if lang == "go":
            exe = tmp_path / "copy"
            subprocess.run(["go", "build", "-o", str(exe), "."], cwd=src / "copy_books", check=True,  # noqa: ASYNC221
                           env=harness.go_env(tmp_path), capture_output=True, timeout=300)
            cmd = [str(exe)]
        else:
            cmd = ["python3", str(src / "copy_books.py")]
        env = {**os.environ, "SOURCE_URL": urls[source], "TARGET_URL": urls[sink]}

        def run(*args: str) -> dict[str, Any]:
            proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            return report

        first = run("--max-batches" if lang == "python" else "-max-batches", "1")
        assert first == {"position": ["2"], "rows": 2, "batches": 1}
        assert [r[0] for r in await _rows(sink, where[sink], tables["books_copy"])] == [1, 2]
        rest = run("--after" if lang == "python" else "-after", *first["position"])
        assert rest == {"position": ["3"], "rows": 1, "batches": 1}
        again = run()  # from the start: upserts, no duplicate keys
        assert again["rows"] == 3
        copied = await _rows(sink, where[sink], tables["books_copy"])
        original = await _rows(source, where[source], tables["books"])
        assert [tuple(map(str, r)) for r in copied] == [tuple(map(str, r)) for r in original]
    finally:
        await harness.drop("postgres", pg_dsn, tables)
        await harness.drop("mysql", mysql_params, tables)
