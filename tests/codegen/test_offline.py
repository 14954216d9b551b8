"""Offline types from a schema file: CREATE TABLE ... LIKE copies the other table's columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from etlsync.codegen.infer import load_schema_file


@pytest.mark.parametrize("dialect, like", [
    ("postgres", "CREATE TABLE {new} (LIKE {old} INCLUDING ALL);"),
    ("mysql", "CREATE TABLE {new} LIKE {old};"),
])
def test_create_table_like_copies_the_columns(dialect: str, like: str, tmp_path: Path) -> None:
    path = tmp_path / "schema.sql"
    path.write_text("CREATE TABLE a (id BIGINT PRIMARY KEY, t TIME, note TEXT);\n"
                    + like.format(new="b", old="a") + "\n" + like.format(new="c", old="nowhere"))
    schema = load_schema_file(path, dialect)
    assert list(schema["b"]) == ["id", "t", "note"]
    assert [(i.type.logical, i.nullable) for i in schema["b"].values()] == \
        [("int64", False), ("time", True), ("text", True)]
    assert "c" not in schema  # LIKE a table the file does not define: left out, not empty
