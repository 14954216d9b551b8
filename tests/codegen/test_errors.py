"""Bad input: syntax errors name the query, line and column; collisions and untranslatable
constructs are refused; the server's own message is shown."""

from __future__ import annotations

import pytest

from etlsync.codegen import CodegenError, generate_files, load_queries
from etlsync.codegen.dialect import target_sql
from tests.codegen import harness

SCHEMA = str(harness.plain_schema())


def test_syntax_error_names_query_line_and_column() -> None:
    text = ("-- name: Ok :one\nSELECT 1 AS x;\n\n-- name: Broken :many\nSELECT a,\n"
            "  b FROM t WHERE x = $1 AND y = = 2;\n")
    with pytest.raises(CodegenError) as err:
        load_queries("q.sql", text=text)
    message = str(err.value)
    assert message.startswith("q.sql:6:")
    assert "query 'Broken'" in message and "syntax error" in message
    col = int(message.split(":")[2])
    assert text.splitlines()[5][col - 1] == "="  # the column points at the second '='


def test_syntax_error_after_named_parameter_maps_back_to_the_file() -> None:
    text = "-- name: Q :one\nSELECT :first_param AS a FROM t WHERE x = = 1;\n"
    with pytest.raises(CodegenError, match=r"^q.sql:2:\d+: query 'Q': syntax error") as err:
        load_queries("q.sql", text=text)
    col = int(str(err.value).split(":")[2])
    assert text.splitlines()[1][col - 1:] == "= 1;"  # the second '=', not shifted by the rewrite


@pytest.mark.parametrize("text, message", [
    ("SELECT 1;", "SQL before the first"),
    ("-- name: A :some\nSELECT 1;", "unknown kind ':some'"),
    ("-- name: A :one\nSELECT 1 AS x;\n-- name: a :one\nSELECT 2 AS x;", "used twice"),
    ("-- name: A :one\nUPDATE t SET x = 1;", ":one needs a statement that returns rows"),
    ("-- name: A :one\nSELECT $2 AS x;", r"parameter \$1 is never used"),
    ("-- name: A :one\nSELECT $1 AS x, :b AS y;", "mixed parameter styles"),
    ("-- name: A :transfer\nINSERT INTO t (a) SELECT a FROM s;", "needs key=COLUMN"),
])
def test_bad_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(CodegenError, match=message):
        load_queries("q.sql", text=text)


async def test_name_collisions_in_generated_code_are_refused() -> None:
    text = ("-- name: get_author :one\nSELECT id FROM authors WHERE id = :id;\n"
            "-- name: GetAuthor :one\nSELECT id FROM authors WHERE id = :id;\n")
    with pytest.raises(CodegenError, match=r"both become 'GetAuthor' in go"):
        await generate_files("q.sql", "go", schema_file=SCHEMA, text=text, format_code=False)
    cols = "-- name: Cols :many\nSELECT created_at, name AS \"createdAt\" FROM authors;\n"
    with pytest.raises(CodegenError, match=r"q.sql:2:1: query 'Cols': result columns 'created_at' "
                                           r"and 'createdAt' both become 'createdAt' in java"):
        await generate_files("q.sql", "java", schema_file=SCHEMA, text=cols, format_code=False)


def test_untranslatable_construct_names_line_and_column() -> None:
    text = "-- name: Arr :many\nSELECT id,\n       ARRAY[1, 2] AS a FROM authors;\n"
    qf = load_queries("q.sql", text=text)
    with pytest.raises(CodegenError, match=r"q.sql:3:\d+: query 'Arr': does not translate to "
                                           r"mysql: arrays"):
        target_sql(qf.queries[0], "postgres", "mysql")


async def test_unknown_table_offline_is_named() -> None:
    with pytest.raises(CodegenError, match="table 'nope' is not in the schema"):
        await generate_files("q.sql", "python", schema_file=SCHEMA,
                             text="-- name: A :many\nSELECT x FROM nope;\n", format_code=False)


@pytest.mark.integration
async def test_server_rejection_shows_the_servers_message(pg_dsn: str, mysql_url: str) -> None:
    text = "-- name: Bad :many\nSELECT no_such_column FROM pg_class WHERE relname = :n;\n"
    with pytest.raises(CodegenError, match=r"q.sql:2:8: query 'Bad': the server rejected it: "
                                           r"42703: column \"no_such_column\" does not exist"):
        await generate_files("q.sql", "go", database_url=pg_dsn, text=text, format_code=False)
    text = "-- name: Bad :many\nSELECT no_such_column FROM information_schema.TABLES WHERE TABLE_NAME = :n;\n"
    with pytest.raises(CodegenError, match=r"query 'Bad': the server rejected it: 1054: Unknown "
                                           r"column 'no_such_column'"):
        await generate_files("q.sql", "go", dialect="postgres", target="mysql",
                             database_url=mysql_url, text=text, format_code=False)
