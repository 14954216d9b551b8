"""Generated code in every language, compiled and run against PostgreSQL and MariaDB: its
output equals the same queries run directly (types from the live servers)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from etlsync.codegen import generate_files, load_queries, write_files
from etlsync.codegen.analyze import analyze
from tests.codegen import harness
from tests.codegen.conftest import need_toolchain

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
@pytest.mark.parametrize("lang", ["python", "go", "java", "node", "knex"])
async def test_generated_code_matches_direct_queries(
        lang: str, dialect: str, tmp_path: Path, unique_name: str,
        request: pytest.FixtureRequest) -> None:
    """``knex`` is Node.js with ``node_driver="knex"``."""
    need_toolchain("node" if lang == "knex" else lang)
    where = request.getfixturevalue("pg_dsn" if dialect == "postgres" else "mysql_params")
    url = f"{where}?sslmode=disable" if dialect == "postgres" else request.getfixturevalue("mysql_url")
    tables = harness.names(unique_name)
    text = harness.sql_file("queries.sql", tables)
    create = harness.create_pg if dialect == "postgres" else harness.create_mysql
    await create(where, tables)
    try:
        files = await generate_files("queries.sql", "node" if lang == "knex" else lang,
                                     dialect="postgres", target=dialect, database_url=url,
                                     package="gen", main=True, text=text,
                                     node_driver="knex" if lang == "knex" else "plain")
        src = tmp_path / "src"
        write_files(files, src)
        cmd = harness.build(lang, src, tmp_path)
        qf = load_queries("queries.sql", "postgres", text)
        texts = await analyze(qf, dialect, database_url=url)
        expected = harness.normalize(qf, harness.CALLS,
                                     await harness.run_direct(dialect, where, qf, texts, harness.CALLS))
        got = harness.run_runner(lang, cmd, src, url, harness.encode_args(qf, harness.CALLS))
        assert len(got) == len(harness.CALLS)
        actual = harness.normalize(qf, harness.CALLS, got)
        for (name, args), exp, act in zip(harness.CALLS, expected, actual, strict=True):
            assert act == exp, f"{lang}/{dialect} {name}{args}"
        results = dict(zip([f"{n}#{i}" for i, (n, _) in enumerate(harness.CALLS)], actual, strict=True))
        # the runner's writes really happened: the new book and the changed author
        assert results["CountBooks#12"] == {"n": 2}
        assert results["SetAuthorMeta#13"] == 1
        assert results["GetAuthor#14"]["meta"] == {"k": "v", "x": [True, None]}
        assert results["GetAuthor#14"]["avatar"] is None  # a NULL bytes parameter is NULL
        # time values and a time parameter with a fraction of a second
        assert results["AuthorsAwakeBefore#8"] == [
            {"id": 1, "wake_at": dt.time(7, 30)}, {"id": 3, "wake_at": dt.time(23, 59, 59, 250000)}]
        assert results["GetAuthor#0"]["wake_at"] == dt.time(7, 30)
    finally:
        await harness.drop(dialect, where, tables)
