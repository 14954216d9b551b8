"""Python with ``dataframes=True``: every ``:many`` query also returns a pandas DataFrame whose
rows are the same values its list function returns, a column per result column, nullable
dtypes for numbers, bools and text (an int column with NULLs stays an int column)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from etlsync.codegen import generate_files, load_queries, write_files
from etlsync.codegen.analyze import analyze
from etlsync.codegen.naming import snake
from tests.codegen import harness

pytestmark = pytest.mark.integration
pandas = pytest.importorskip("pandas")


def _module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _plain(v: Any) -> Any:
    return None if v is pandas.NA or v is pandas.NaT else v


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_many_queries_return_dataframes(dialect: str, tmp_path: Path, unique_name: str,
                                        request: pytest.FixtureRequest) -> None:
    import sqlalchemy

    where = request.getfixturevalue("pg_dsn" if dialect == "postgres" else "mysql_params")
    url = f"{where}?sslmode=disable" if dialect == "postgres" else request.getfixturevalue("mysql_url")
    tables = harness.names(unique_name)
    text = harness.sql_file("queries.sql", tables)
    asyncio.run((harness.create_pg if dialect == "postgres" else harness.create_mysql)(where, tables))
    name = f"queries_{unique_name}_{dialect}"
    try:
        files = asyncio.run(generate_files("queries.sql", "python", target=dialect, database_url=url,
                                           dataframes=True, text=text))
        write_files(files, tmp_path)
        queries = _module(tmp_path / "queries.py", name)
        qf = load_queries("queries.sql", "postgres", text)
        asyncio.run(analyze(qf, dialect, database_url=url))
        by_name = {q.name: q for q in qf.queries}
        engine_url = url.replace("postgresql://", "postgresql+psycopg://", 1) \
            .replace("mysql://", "mysql+pymysql://", 1)
        engine = sqlalchemy.create_engine(engine_url)
        checked = 0
        with engine.connect() as conn:
            for query_name, args in harness.CALLS:
                q = by_name[query_name]
                if q.kind != "many":
                    continue
                kwargs = {p.name: a for p, a in zip(q.params, args, strict=True)}
                rows = getattr(queries, snake(query_name))(conn, **kwargs)
                frame = getattr(queries, snake(query_name) + "_df")(conn, **kwargs)
                assert isinstance(frame, pandas.DataFrame)
                assert list(frame.columns) == [c.name for c in q.columns]
                got = [tuple(_plain(v) for v in rec) for rec in frame.itertuples(index=False)]
                assert got == [tuple(getattr(r, f.name) for f in r.__dataclass_fields__.values())
                               for r in rows], query_name
                checked += len(rows)
            scores = queries.authors_by_numbers_df(conn, score=20, min_rating=0.0)
            assert str(scores["score"].dtype) == "Int32"
            assert scores["score"].isna().tolist() == [False, False, True]  # Cy has no score
            assert str(scores["id"].dtype) == "Int64"
            times = queries.authors_created_between_df(conn, start=harness.T1, stop=harness.T3)
            assert str(times["created_at"].dtype) == "datetime64[us]"
            if dialect == "postgres":  # MariaDB has no timestamp with time zone
                assert str(times["seen_at"].dtype) == "datetime64[us, UTC]"
            empty = queries.authors_by_avatar_df(conn, avatar=b"none")
            assert empty.empty and list(empty.columns) == ["id", "avatar"]
            assert str(empty["id"].dtype) == "Int64"
        engine.dispose()
        assert checked >= 10  # the suite's :many calls returned rows to compare
    finally:
        sys.modules.pop(name, None)
        asyncio.run(harness.drop(dialect, where, tables))
