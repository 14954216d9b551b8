"""MysqlSink and MysqlCheckpointStore against the real server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from etlsync.connectors.mysql import MysqlCheckpointStore, MysqlSink
from etlsync.core.batch import Batch, Op
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import StageError
from etlsync.core.pipeline import Pipeline
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.testing import MemorySource
from tests.mysql.helpers import ListSource, execute, fetch, options

pytestmark = pytest.mark.integration

TRICKY = [
    {"id": 1, "s": "tab\there\nnewline \\ back", "n": None, "d": Decimal("-12.500000000"),
     "ts": dt.datetime(2024, 1, 2, 3, 4, 5, 600000), "b": b"\x00\t\n\\x", "j": {"a": [1, "x"]},
     "day": dt.date(2020, 2, 29), "flag": True, "f": 1.25, "e": "😀"},
    {"id": 2, "s": "", "n": 5, "d": None, "ts": None, "b": None, "j": None, "day": None,
     "flag": False, "f": None, "e": None},
    {"id": 3, "s": "\\N", "n": -(2**62), "d": Decimal("0"), "ts": dt.datetime(1999, 12, 31),
     "b": b"", "j": [], "day": dt.date(1000, 1, 1), "flag": None, "f": -0.5, "e": "ok"},
]


def norm(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    if isinstance(out.get("j"), str):
        import json

        out["j"] = json.loads(out["j"])
    if out.get("flag") is not None:
        out["flag"] = bool(out["flag"])
    return out


@pytest.mark.parametrize("record_form", [False, True], ids=["dicts", "records"])
@pytest.mark.parametrize("method", ["load_data", "insert"])
async def test_append_roundtrips_tricky_values(mysql_params: dict[str, Any], unique_name: str,
                                               method: str, record_form: bool) -> None:
    opts = options(mysql_params)
    sink = MysqlSink(opts, table=unique_name, primary_key=["id"], load_method=method)
    source = MemorySource(TRICKY, 2, record_form=record_form)
    await Pipeline(source, sinks=[sink], name=unique_name).run()
    got = await fetch(opts, f"SELECT * FROM `{unique_name}` ORDER BY id")
    assert [norm(r) for r in got] == [norm(r) for r in TRICKY]


async def test_record_form_append_maps_columns_by_name(mysql_params: dict[str, Any],
                                                       unique_name: str) -> None:
    opts = options(mysql_params)
    await execute(opts, f"CREATE TABLE `{unique_name}` (id int primary key, s varchar(10), n int)")
    sink = MysqlSink(opts, table=unique_name, primary_key=["id"], schema_policy="discard")
    # columns in another order than the table's, one the table lacks, one the batch lacks
    rows = [{"n": 7, "extra": "x", "id": 1}, {"n": 8, "extra": "y", "id": 2}]
    await Pipeline(MemorySource(rows, record_form=True), sinks=[sink], name=unique_name).run()
    got = await fetch(opts, f"SELECT id, s, n FROM `{unique_name}` ORDER BY id")
    assert got == [{"id": 1, "s": None, "n": 7}, {"id": 2, "s": None, "n": 8}]


async def test_changes_apply_in_order_with_key_updates(mysql_params: dict[str, Any],
                                                       unique_name: str) -> None:
    opts = options(mysql_params)
    schema = Schema((Column("id", ColumnType.INTEGER, False), Column("v", ColumnType.STRING)), ("id",))
    b1 = Batch([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "a2"}, {"id": 2, "v": "b"}],
               stream="t", ops=[Op.INSERT, Op.INSERT, Op.UPDATE, Op.DELETE],
               before=[None, None, {"id": 1, "v": "a"}, None], schema=schema)
    b2 = Batch([{"id": 10, "v": "a2"}, {"id": 2, "v": "again"}], stream="t",
               ops=[Op.UPDATE, Op.INSERT], before=[{"id": 1, "v": "a2"}, None], schema=schema)
    sink = MysqlSink(opts, table=unique_name)
    await Pipeline(ListSource([b1, b2]), sinks=[sink], name=unique_name).run()
    rows = await fetch(opts, f"SELECT id, v FROM `{unique_name}` ORDER BY id", dict_rows=False)
    assert rows == [(2, "again"), (10, "a2")]


async def test_exactly_once_position_lands_with_the_data(mysql_params: dict[str, Any],
                                                         unique_name: str) -> None:
    opts = options(mysql_params)
    store = MysqlCheckpointStore(opts, table=unique_name + "_state")
    rows = [{"id": i} for i in range(25)]

    class CrashAt20(MysqlSink):
        async def write(self, batch: Batch) -> None:
            if batch.rows and batch.rows[0]["id"] == 20:
                raise RuntimeError("crash")
            await super().write(batch)

    with pytest.raises(StageError):
        await Pipeline(MemorySource(rows, 10), sinks=[CrashAt20(
            opts, table=unique_name, primary_key=["id"], state_table=unique_name + "_state")],
            name="p", checkpoint_store=store).run()
    assert await store.load("p") == Checkpoint(20)  # the sink's own, with the 20 rows
    # the default store is the sink's: the run resumes after the committed rows, exactly
    sink2 = MysqlSink(opts, table=unique_name, primary_key=["id"], state_table=unique_name + "_state")
    await Pipeline(MemorySource(rows, 10), sinks=[sink2], name="p").run()
    got = await fetch(opts, f"SELECT COUNT(*), COUNT(DISTINCT id) FROM `{unique_name}`",
                      dict_rows=False)
    assert got == [(25, 25)]
    assert await store.load("p") == Checkpoint(25, pass_open=False)


async def test_password_from_env_and_file(tmp_path: Any, monkeypatch: Any,
                                          mysql_params: dict[str, Any]) -> None:
    from etlsync.connectors.mysql import MysqlOptions

    monkeypatch.setenv("ETLSYNC_TEST_MYSQL_PW", "s3cret")
    assert MysqlOptions(password_env="ETLSYNC_TEST_MYSQL_PW").resolve_password() == "s3cret"
    f = tmp_path / "pw"
    f.write_text("fromfile\n")
    assert MysqlOptions(password_file=str(f)).resolve_password() == "fromfile"
    assert "s3cret" not in repr(MysqlOptions(password="s3cret"))
    assert MysqlOptions(ssl_ca=None).ssl_context() is None
    assert MysqlOptions(ssl=True, ssl_verify=False).ssl_context() is not None


async def test_checkpoint_store_roundtrips_rich_positions(mysql_params: dict[str, Any],
                                                          unique_name: str) -> None:
    opts = options(mysql_params)
    store = MysqlCheckpointStore(opts, table=unique_name)
    assert await store.load("p") is None
    pos = {"phase": "snapshot", "last_key": (1, "x", Decimal("2.50")),
           "at": dt.datetime(2024, 1, 2, 3, 4, 5, 6), "binlog": {"file": "f", "pos": 4}}
    await store.commit("p", Checkpoint(pos))
    await store.commit("p", Checkpoint({**pos, "table": 2}, pass_open=False))
    assert await store.load("p") == Checkpoint({**pos, "table": 2}, pass_open=False)
