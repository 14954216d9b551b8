"""Golden files pin the shape of the generated code (offline types from a schema file).
Regenerate with ``ETLSYNC_UPDATE_GOLDEN=1``; the run-against-the-servers tests check behaviour."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from etlsync.codegen import generate_files
from tests.codegen import harness
from tests.codegen.conftest import need_toolchain

GOLDEN = Path(__file__).parent / "golden"
PLAIN = {t: t for t in harness.names("x")}
QUERIES = harness.fill((harness.SQL_DIR / "queries.sql").read_text(), PLAIN)
TRANSFERS = harness.fill((harness.SQL_DIR / "transfers.sql").read_text(), PLAIN)


@pytest.mark.parametrize("lang", ["python", "python-dataframes", "go", "java", "node", "node-knex"])
async def test_generated_code_matches_golden_files(lang: str) -> None:
    """``node-knex``: Node.js with ``node_driver="knex"``; ``python-dataframes``: with
    ``dataframes=True``."""
    base = lang.split("-")[0]
    if base in ("go", "node"):
        need_toolchain(base)  # gofmt / prettier shape the golden files
    frames = lang == "python-dataframes"  # only queries.py differs
    files = await generate_files("queries.sql", base, schema_file=harness.plain_schema(),
                                 package="gen", main=not frames,
                                 text=QUERIES + ("" if frames else "\n" + TRANSFERS),
                                 node_driver="knex" if lang == "node-knex" else "plain",
                                 dataframes=frames)
    folder = GOLDEN / lang
    if os.environ.get("ETLSYNC_UPDATE_GOLDEN") == "1":
        for name, content in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(content)
    expected = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(expected)
    for name, content in files.items():
        assert content == expected[name], f"{lang}/{name} differs from the golden file"


async def test_mysql_target_rewrites_parameters_itself() -> None:
    files = await generate_files("queries.sql", "go", target="mysql", format_code=False,
                                 schema_file=harness.plain_schema(), text=QUERIES)
    code = files["queries.go"]
    assert "WHERE t.total > ?" in code and "LIMIT ?" in code
    assert "@1" not in code and "$1" not in code  # sqlglot alone would write MySQL @1
