"""Jobs against the real connectors: every built-in type imports, jobs for each connector
family validate (settings reach each connector under its own option names), and a CSV ->
PostgreSQL job runs incrementally on the real server."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from etlsync import ConfigError
from etlsync.cli import main
from etlsync.jobs import build_job, load_job, registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("kind", registry.KINDS)
def test_every_builtin_type_imports(kind: str) -> None:
    for name in registry.names(kind):
        factory = registry.resolve(kind, name, f"{kind}.type").load()
        assert callable(factory), (kind, name)


def plan_of(tmp_path: Path, body: str) -> dict[str, dict[str, object]]:
    p = tmp_path / "job.yaml"
    p.write_text(body, encoding="utf-8")
    built = build_job(load_job(p, {"PW": "pw-from-env"}))
    return {s["key"]: s["options"] for s in built.plan()["stages"]}


def test_postgres_job_settings_and_masked_dsn(tmp_path: Path) -> None:
    stages = plan_of(tmp_path, """
source: {type: postgres, connection: "postgresql://etl:${PW}@127.0.0.1/db", table: orders}
sync: {sync_mode: incremental, cursor_field: updated_at, primary_key: id}
sink: {type: postgres, connection: "postgresql://etl:${PW}@127.0.0.1/db", table: copy}
write: {write_mode: upsert, conflict: merge}
checkpoint: {type: postgres, connection: "postgresql://etl:${PW}@127.0.0.1/db"}
batch_size: 500
""")
    assert stages["source"]["sync_mode"] == "incremental"
    assert stages["source"]["batch_size"] == 500
    assert stages["sink"]["conflict"] == "merge" and stages["sink"]["primary_key"] == ["id"]
    assert "pw-from-env" not in json.dumps(stages)


def test_mysql_job_old_option_names_still_work_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="now called 'connection'"):
        stages = plan_of(tmp_path, """
source:
  type: mysql
  tables: [shop.orders]
  options: {host: 127.0.0.1, port: 3306, user: root, password: "${PW}", database: shop}
sync: {sync_mode: incremental, cursor_field: updated_at}
sink: {type: mysql, table: orders2, database: shop, options: {host: 127.0.0.1, user: root}}
write: {write_mode: upsert}
batch_size: 500
""")
    src = stages["source"]
    assert src["sync_mode"] == "incremental" and src["batch_size"] == 500  # one name everywhere
    assert isinstance(src["connection"], dict) and src["connection"]["host"] == "127.0.0.1"
    assert src["connection"]["password"] == "***" and src["connection"]["database"] == "shop"
    assert stages["sink"]["write_mode"] == "upsert"


def test_cdc_sources_take_sync_mode_cdc_and_mongo_sinks_get_their_key(tmp_path: Path) -> None:
    stages = plan_of(tmp_path, """
source: {type: postgres_cdc, connection: "postgresql://postgres@127.0.0.1/db", slot: s,
         publication: p}
sync: {sync_mode: cdc, primary_key: _id}
sinks:
  - {type: mongo, connection: "mongodb://127.0.0.1:1", database: d, collection: c}
  - {type: sqlite, path: out.db, table: t}
write: {write_mode: upsert}
""")
    assert stages["sinks[0]"]["primary_key"] == ["_id"]
    assert stages["sinks[1]"]["primary_key"] == ["_id"]
    p = tmp_path / "bad.yaml"
    p.write_text("source: {type: postgres_cdc, connection: x, slot: s, publication: p}\n"
                 "sync: {sync_mode: incremental, cursor_field: u}\nsink: {type: collect}\n")
    with pytest.raises(ConfigError, match=r"sync\.sync_mode: source type 'postgres_cdc' does"):
        build_job(load_job(p, {}))


def query(dsn: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    asyncpg = pytest.importorskip("asyncpg")

    async def run() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()
    return asyncio.run(run())


@pytest.mark.integration
def test_csv_to_postgres_job_is_incremental_and_exactly_once(
        tmp_path: Path, pg_dsn: str, unique_name: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    job = tmp_path / "pg.yaml"
    job.write_text(f"""
name: {unique_name}
source: {{type: csv, path: data/orders.csv}}
sync: {{sync_mode: incremental, cursor_field: updated_at, primary_key: id}}
operators:
  - cast: {{id: integer, quantity: integer, price: decimal, order_date: date,
            updated_at: datetime}}
sink: {{type: postgres, connection: "${{ETLSYNC_JOB_TEST_DSN}}", table: {unique_name}}}
write: {{write_mode: upsert}}
checkpoint: {{type: postgres, connection: "${{ETLSYNC_JOB_TEST_DSN}}"}}
""")
    monkeypatch.setenv("ETLSYNC_JOB_TEST_DSN", pg_dsn)
    table = f'"{unique_name}"'
    try:
        assert main(["run", str(job), "--json", "--no-progress"]) == 0
        first = json.loads(capsys.readouterr().out)
        assert (first["rows_read"], first["rows_written"]) == (300, 300)
        [(count, total)] = query(pg_dsn, f"SELECT count(*), sum(price) FROM {table}")
        assert count == 300 and str(total) == "71256.66"
        assert main(["run", str(job), "--dry-run", "--limit", "1"]) == 0
        out = capsys.readouterr().out
        assert "price       decimal  (numeric)" in out and "first 0 row(s)" in out
        with (tmp_path / "data" / "orders.csv").open("a") as f:
            f.write("7,Later Co,paid,1,1.00,2024-03-09,2024-03-09 00:00:00\n")
        assert main(["run", str(job), "--json", "--no-progress"]) == 0
        assert json.loads(capsys.readouterr().out)["rows_read"] == 1
        [(customer, price)] = query(pg_dsn, f"SELECT customer, price FROM {table} WHERE id = 7")
        assert customer == "Later Co" and str(price) == "1.00"
        assert query(pg_dsn, f"SELECT count(*) FROM {table}") == [(300,)]
    finally:
        query(pg_dsn, f"DROP TABLE IF EXISTS {table}")
        query(pg_dsn, "DELETE FROM _etlsync_state WHERE pipeline = $1", unique_name)


def test_a_top_level_batch_size_reaches_mongo_cdc_and_unknown_options_are_errors(
        tmp_path: Path) -> None:
    stages = plan_of(tmp_path, """
source: {type: mongo_cdc, connection: "mongodb://127.0.0.1:1", database: d}
sink: {type: collect}
checkpoint: {type: memory}
batch_size: 100
""")
    assert stages["source"]["batch_size"] == 100
    p = tmp_path / "bad.yaml"
    p.write_text("source: {type: mongo_cdc, connection: 'mongodb://127.0.0.1:1', database: d,"
                 " batchsize: 5}\nsink: {type: collect}\ncheckpoint: {type: memory}\n")
    with pytest.raises(ConfigError, match=r"source\.batchsize: unknown option; did you mean "
                                          r"'batch_size'\?"):
        build_job(load_job(p, {}))
