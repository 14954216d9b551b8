"""MongoSource against a real wire-protocol server: chunks, resume, projection, flattening,
incremental reads with ties, discovery."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from etlsync.connectors.mongo import MongoConnection, MongoSource
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.core.errors import ConfigError
from etlsync.core.pipeline import Pipeline
from etlsync.core.schema import ColumnType
from etlsync.testing import CollectingSink


async def _collect(source: MongoSource, position: Any = None) -> list[Any]:
    return [b async for b in source.read(position)]


@pytest.mark.integration
async def test_pipeline_commits_snapshot_positions(mongo_uri: str, mongo_db: Any) -> None:
    await mongo_db.a.insert_many([{"_id": i} for i in range(30)])
    await mongo_db.b.insert_many([{"_id": f"k{i:02}"} for i in range(20)])
    store = MemoryCheckpointStore()
    sink = CollectingSink()
    src = MongoSource(MongoConnection(uri=mongo_uri), database=mongo_db.name, batch_size=8)
    await Pipeline(src, [], sink, name="p", checkpoint_store=store).run()
    assert {b.stream for b in sink.batches} == {"a", "b"}
    assert len(sink.rows) == 50
    last = await store.load("p")
    assert last is not None
    assert last.position["mode"] == "full_refresh"
    assert all(s["done"] for s in last.position["collections"].values()), last


@pytest.mark.integration
async def test_projection_and_dotted_flattening(mongo_uri: str, mongo_db: Any) -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5)
    await mongo_db.p.insert_one({"_id": 1, "a": {"b": 1, "c": {"d": "x"}}, "big": "no",
                                 "t": when})
    src = MongoSource(mongo_uri, database=mongo_db.name, collections=["p"],
                      projection=["a", "t"], flatten="dotted")
    rows = [r for b in await _collect(src) for r in b.rows]
    assert rows == [{"_id": 1, "a.b": 1, "a.c.d": "x", "t": when}]


@pytest.mark.integration
async def test_incremental_pushes_down_cursor_and_handles_ties(
        mongo_uri: str, mongo_db: Any) -> None:
    await mongo_db.ev.insert_many([{"_id": i, "ts": i // 3, "x": i} for i in range(9)])
    src = MongoSource(mongo_uri, database=mongo_db.name, collections="ev",
                      sync_mode="incremental", cursor_field="ts", batch_size=4)
    first = await _collect(src)
    ids = [r["_id"] for b in first for r in b.rows]
    assert ids == list(range(9))
    pos = first[-1].position
    # a late row at the watermark's value, a new row, and a row below the watermark
    await mongo_db.ev.insert_many([{"_id": 100, "ts": 2}, {"_id": 101, "ts": 3},
                                   {"_id": 102, "ts": 0}, {"_id": 103, "ts": None}])
    second = await _collect(src, pos)
    assert [r["_id"] for b in second for r in b.rows] == [100, 101]
    third = await _collect(src, second[-1].position)
    assert [r["_id"] for b in third for r in b.rows] == []


@pytest.mark.integration
async def test_incremental_on_datetime_cursor_with_query(mongo_uri: str, mongo_db: Any) -> None:
    base = dt.datetime(2024, 1, 1)
    await mongo_db.o.insert_many([
        {"_id": i, "meta": {"updated": base + dt.timedelta(minutes=i)}, "keep": i % 2 == 0}
        for i in range(10)])
    src = MongoSource(mongo_uri, database=mongo_db.name, collections="o", sync_mode="incremental",
                      cursor_field="meta.updated", query={"keep": True}, flatten="dotted")
    rows = [r for b in await _collect(src) for r in b.rows]
    assert [r["_id"] for r in rows] == [0, 2, 4, 6, 8]
    assert rows[0]["meta.updated"] == base


@pytest.mark.integration
async def test_discover_infers_schema(mongo_uri: str, mongo_db: Any) -> None:
    await mongo_db.s.insert_many([{"_id": 1, "n": 1, "a": {"b": "x"}}, {"_id": 2, "n": 2}])
    schemas = await MongoSource(mongo_uri, database=mongo_db.name, flatten="dotted").discover()
    schema = schemas["s"]
    assert schema.primary_key == ("_id",)
    assert schema.names == ["_id", "n", "a.b"]
    assert schema.column("n").type is ColumnType.INTEGER


def test_bad_options_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="cursor_field"):
        MongoSource("mongodb://x", database="d", sync_mode="incremental")
    with pytest.raises(ConfigError, match="flatten"):
        MongoSource("mongodb://x", database="d", flatten="xml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="_id"):
        MongoSource("mongodb://x", database="d", projection={"_id": 0, "a": 1})


def test_uri_from_env_or_file_and_redaction(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("MY_URI", "mongodb://user:secret@h:1/")
    conn = MongoConnection(uri_env="MY_URI", tls=True, tls_ca_file="/ca.pem",
                           tls_certificate_key_file="/client.pem")
    assert conn.resolve_uri() == "mongodb://user:secret@h:1/"
    assert "secret" not in conn.describe()
    kw = conn.client_kwargs()
    assert kw["tls"] is True and kw["tlsCAFile"] == "/ca.pem"
    assert kw["tlsCertificateKeyFile"] == "/client.pem"
    f = tmp_path / "uri"
    f.write_text("mongodb://file-host:2/\n")
    assert MongoConnection(uri_file=str(f)).resolve_uri() == "mongodb://file-host:2/"
    monkeypatch.delenv("MY_URI")
    with pytest.raises(ConfigError, match="MY_URI"):
        MongoConnection(uri_env="MY_URI").resolve_uri()
