"""SQL to code: typed Python, Java, Go and Node.js functions from named SQL queries, transfers
as standalone programs, and etlsync job files from SELECTs (see docs/codegen.md).

The extra ``etlsync[codegen]`` installs sqlglot; live typing needs ``etlsync[postgres]`` or
``etlsync[mysql]``.
"""

from __future__ import annotations

from pathlib import Path

from etlsync.codegen.model import CodegenError, Param, Query, QueryFile, ResultColumn, SqlType

__all__ = ["CodegenError", "Param", "Query", "QueryFile", "ResultColumn", "SqlType",
           "generate_files", "load_queries", "write_files"]


def load_queries(path: str | Path, dialect: str = "postgres", text: str | None = None) -> QueryFile:
    """Parse a query file (syntax checked, parameters found; not typed yet)."""
    from etlsync.codegen.parse import parse_file

    return parse_file(path, dialect, text)


async def generate_files(path: str | Path, lang: str, *, dialect: str = "postgres",
                         target: str | None = None, sink_dialect: str | None = None,
                         schema_file: str | Path | None = None, database_url: str | None = None,
                         package: str = "", main: bool = False, format_code: bool = True,
                         node_driver: str = "plain", dataframes: bool = False,
                         text: str | None = None) -> dict[str, str]:
    """Generated files (relative path -> content) for the queries of ``path``.

    ``node_driver``: ``plain`` (pg / mysql2) or ``knex``; ``dataframes``: Python ``:many``
    queries also get a ``<name>_df`` function returning a pandas DataFrame.

    :raises CodegenError: bad input, naming the query, line and column.
    """
    from etlsync.codegen import lang_go, lang_java, lang_node, lang_python
    from etlsync.codegen.analyze import analyze
    from etlsync.codegen.common import GenOptions
    from etlsync.codegen.formatting import format_files

    generators = {"python": lang_python.generate, "java": lang_java.generate,
                  "go": lang_go.generate, "node": lang_node.generate}
    if lang not in generators:
        raise CodegenError(f"--lang {lang!r}: expected one of {', '.join(generators)}")
    qf = load_queries(path, dialect, text)
    target = target or dialect
    texts = await analyze(qf, target, schema_file=schema_file, database_url=database_url)
    opts = GenOptions(target=target, sink_dialect=sink_dialect, package=package, main=main,
                      source_name=Path(path).name, node_driver=node_driver, dataframes=dataframes)
    files = generators[lang](qf, texts, opts)
    return format_files(files, lang) if format_code else files


def write_files(files: dict[str, str], out: Path) -> None:
    """Write generated files under ``out`` (directories created)."""
    from etlsync.codegen.cli import write_files as write

    write(files, out)
