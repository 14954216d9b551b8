"""examples/codegen_offline.py runs and writes code in every language; the Python it writes
imports and type-checks as a module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_offline_example_generates_every_language(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "examples/codegen_offline.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "func TopAuthors(ctx context.Context, db DBTX, total string, limit int64)" in proc.stdout
    for path in ("python/queries.py", "go/queries.go", "java/example/Queries.java", "node/queries.js"):
        assert (tmp_path / path).stat().st_size > 500
    compiled = subprocess.run([sys.executable, "-m", "py_compile", str(tmp_path / "python/queries.py")],
                              capture_output=True, text=True, check=False)
    assert compiled.returncode == 0, compiled.stderr


def test_cli_codegen_and_job(tmp_path: Path) -> None:
    from etlsync.cli import main

    assert main(["codegen", str(ROOT / "examples/codegen/queries.sql"), "--lang", "java",
                 "--schema", str(ROOT / "examples/codegen/schema.sql"), "-o", str(tmp_path)]) == 0
    assert "public static int renameAuthor(Connection conn, String name, long id)" in \
        (tmp_path / "queries/Queries.java").read_text()
    schema = ["--schema", str(ROOT / "examples/codegen/schema.sql")]
    queries = str(ROOT / "examples/codegen/queries.sql")
    assert main(["codegen", queries, "--lang", "node", "--node-driver", "knex", "--no-format",
                 *schema, "-o", str(tmp_path / "knex")]) == 0
    assert "await db.raw(sql, values).options({ types })" in (tmp_path / "knex/queries.js").read_text()
    assert main(["codegen", queries, "--lang", "python", "--python-dataframes", *schema,
                 "-o", str(tmp_path / "frames")]) == 0
    assert "def top_authors_df(conn: Connection, *, total: decimal.Decimal, limit: int) -> " \
        "pandas.DataFrame:" in (tmp_path / "frames/queries.py").read_text()
    job_sql = tmp_path / "job.sql"
    job_sql.write_text("-- name: Recent :many\nSELECT id, name, created_at FROM authors "
                       "WHERE created_at > :since AND active;\n")
    assert main(["codegen", str(job_sql), "--job", "--key", "id", "-o", str(tmp_path / "job")]) == 0
    job = (tmp_path / "job" / "job.yaml").read_text()
    assert "sync_mode: incremental" in job and "cursor_field: created_at" in job
    os.environ.setdefault("PG_DSN", "postgresql://user@localhost/db")
    assert main(["validate", str(tmp_path / "job" / "job.yaml")]) == 0
    assert main(["codegen", str(job_sql), "--lang", "go"]) == 2  # no type source: exit 2
