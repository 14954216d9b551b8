"""SqliteSink: type mapping, append, upsert strategies, atomic overwrite, schema policy, changes."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import (
    Batch,
    ConfigError,
    ConflictError,
    Map,
    MemoryCheckpointStore,
    Op,
    Pipeline,
    SchemaError,
    StageError,
)
from etlsync.connectors.files import CsvSource
from etlsync.connectors.sqlite import SqliteSink, SqliteSource
from etlsync.connectors.sqlite.checkpoint import SqliteCheckpointStore, read_state
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.stages import StageContext
from etlsync.testing import CollectingSink, MemorySource


@pytest.fixture(params=[False, True], ids=["dicts", "records"])
def record_form(request: pytest.FixtureRequest) -> bool:
    """Run a test with dict-form batches and with record-form batches (as readers make)."""
    return bool(request.param)


def batch_of(rows: list[dict[str, Any]], record_form: bool) -> Batch:
    """``rows`` as a batch; in record form where all rows have the same keys in order."""
    columns = list(rows[0])
    if record_form and all(list(r) == columns for r in rows):
        return Batch.from_records(columns, [list(r.values()) for r in rows])
    return Batch(rows)


async def open_sink(sink: SqliteSink, pipeline: str = "p") -> SqliteSink:
    await sink.open(StageContext(pipeline, "sink", None))
    return sink


def fetch(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def read_back(db: Path, table: str) -> list[dict[str, Any]]:
    sink = CollectingSink()
    await Pipeline(SqliteSource(db, table=table), [], [sink]).run()
    return sink.rows


async def test_python_values_round_trip_through_the_documented_mapping(
        tmp_path: Path, unique_name: str, record_form: bool) -> None:
    db = tmp_path / "t.db"
    row = {"id": 1, "price": Decimal("12.50"), "big": Decimal("12345678901234567890.123456789"),
           "at": dt.datetime(2024, 5, 1, 10, 30), "aware": dt.datetime(2024, 5, 1, tzinfo=dt.UTC),
           "day": dt.date(2024, 5, 1), "clock": dt.time(8, 15), "ok": True, "blob": b"\x00\xff",
           "doc": {"a": [1, 2]}, "tags": ["x"], "uid": uuid.UUID(int=7), "f": 1.5, "none": None,
           "wait": dt.timedelta(seconds=90)}
    sink = await open_sink(SqliteSink(db, table=unique_name))
    await sink.write(batch_of([row], record_form))
    await sink.close()
    decl = {r[1]: r[2] for r in fetch(db, f"PRAGMA table_info({unique_name})")}
    assert decl["price"] == "DECIMAL_TEXT" and decl["at"] == "DATETIME"
    assert decl["aware"] == "TIMESTAMP" and decl["doc"] == "JSON" and decl["ok"] == "BOOLEAN"
    stored = fetch(db, f"SELECT price, at, ok, doc FROM {unique_name}")[0]
    assert stored == ("12.50", "2024-05-01 10:30:00", 1, '{"a":[1,2]}')
    assert await read_back(db, unique_name) == [row]


async def test_append_of_csv_rows_creates_text_columns(tmp_path: Path, unique_name: str) -> None:
    src = tmp_path / "a.csv"
    src.write_text("id,name\n1,a\n2,\n")
    db = tmp_path / "t.db"
    await Pipeline(CsvSource(src), [], [SqliteSink(db, table=unique_name)]).run()
    await Pipeline(CsvSource(src), [], [SqliteSink(db, table=unique_name)]).run()
    assert fetch(db, f"SELECT * FROM {unique_name}") == [("1", "a"), ("2", ""), ("1", "a"),
                                                         ("2", "")]


STORED = [(1, "a", 10, "keep"), (2, "b", 20, "keep")]


@pytest.mark.parametrize(("conflict", "expected"), [
    ("skip", [(1, "a", 10, "keep"), (2, "b", 20, "keep"), (3, "c", None, None)]),
    ("overwrite", [(1, "a", 11, None), (2, "b", 21, None), (3, "c", None, None)]),
    ("merge", [(1, "a", 11, "keep"), (2, "b", 21, "keep"), (3, "c", None, None)]),
])
async def test_upsert_conflict_strategies_on_a_composite_key(
        tmp_path: Path, unique_name: str, conflict: str, expected: list[tuple[Any, ...]],
        record_form: bool) -> None:
    db = tmp_path / "t.db"
    first = [{"k1": k1, "k2": k2, "v": v, "w": w} for k1, k2, v, w in STORED]
    sink = await open_sink(SqliteSink(db, table=unique_name, write_mode="upsert",
                                      primary_key=["k1", "k2"], conflict=conflict))
    await sink.write(batch_of(first, record_form))
    await sink.write(batch_of([{"k1": 1, "k2": "a", "v": 11}, {"k1": 2, "k2": "b", "v": 21}],
                              record_form))
    await sink.write(batch_of([{"k1": 3, "k2": "c"}], record_form))
    await sink.close()
    assert fetch(db, f"SELECT * FROM {unique_name} ORDER BY k1") == expected


async def test_upsert_fail_names_the_key_and_rolls_the_batch_back(
        tmp_path: Path, unique_name: str, record_form: bool) -> None:
    db = tmp_path / "t.db"
    sink = await open_sink(SqliteSink(db, table=unique_name, write_mode="upsert",
                                      primary_key=["k1", "k2"], conflict="fail"))
    await sink.write(Batch([{"k1": 1, "k2": "a", "v": 1}]))
    with pytest.raises(ConflictError, match=r"key \{'k1': 1, 'k2': 'a'\} already exists"):
        await sink.write(batch_of([{"k1": 5, "k2": "z", "v": 5}, {"k1": 1, "k2": "a", "v": 2}],
                                  record_form))
    await sink.close()
    assert fetch(db, f"SELECT * FROM {unique_name}") == [(1, "a", 1)]


async def test_upsert_without_key_is_a_config_error(tmp_path: Path, unique_name: str) -> None:
    sink = await open_sink(SqliteSink(tmp_path / "t.db", table=unique_name, write_mode="upsert"))
    with pytest.raises(ConfigError, match="needs primary_key"):
        await sink.write(Batch([{"id": 1}]))
    await sink.close()


@pytest.mark.parametrize("policy", ["evolve", "freeze", "discard"])
async def test_schema_policy_for_a_new_column(tmp_path: Path, unique_name: str, policy: str,
                                              record_form: bool) -> None:
    db = tmp_path / "t.db"
    sink = await open_sink(SqliteSink(db, table=unique_name, schema_policy=policy))
    await sink.write(batch_of([{"id": 1}], record_form))
    batch = batch_of([{"extra": 7, "id": 2}], record_form)
    if policy == "freeze":
        with pytest.raises(SchemaError, match="column 'extra'"):
            await sink.write(batch)
    else:
        await sink.write(batch)
    await sink.close()
    rows = fetch(db, f"SELECT * FROM {unique_name}")
    assert rows == {"evolve": [(1, None), (2, 7)], "freeze": [(1,)], "discard": [(1,), (2,)]}[policy]


async def test_change_batches_apply_updates_deletes_and_truncates(
        tmp_path: Path, unique_name: str) -> None:
    db = tmp_path / "t.db"
    sink = await open_sink(SqliteSink(db, table=unique_name, primary_key=["id"]))
    await sink.write(Batch([{"id": i, "v": f"v{i}", "w": "w"} for i in range(4)]))
    await sink.write(Batch(
        [{"id": 1, "v": "new"}, {"id": 2}, {"id": 30, "v": "moved", "w": "w"}, {"id": 9, "v": "i"}],
        ops=[Op.UPDATE, Op.DELETE, Op.UPDATE, Op.INSERT],
        before=[None, None, {"id": 3, "v": "v3", "w": "w"}, None]))
    assert fetch(db, f"SELECT * FROM {unique_name} ORDER BY id") == [
        (0, "v0", "w"), (1, "new", "w"), (9, "i", None), (30, "moved", "w")]
    await sink.write(Batch([{}, {"id": 5, "v": "after"}], ops=[Op.TRUNCATE, Op.INSERT]))
    await sink.close()
    assert fetch(db, f"SELECT * FROM {unique_name}") == [(5, "after", None)]


async def test_a_delete_without_a_key_is_refused(tmp_path: Path, unique_name: str) -> None:
    sink = await open_sink(SqliteSink(tmp_path / "t.db", table=unique_name))
    await sink.write(Batch([{"id": 1}]))
    with pytest.raises(ConfigError, match="needs a primary key"):
        await sink.write(Batch([{"id": 1}], ops=[Op.DELETE]))
    await sink.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from([Op.INSERT, Op.UPDATE, Op.DELETE]),
                                  st.integers(0, 6), st.integers(0, 99)), max_size=40),
       size=st.integers(1, 7))
async def test_changes_match_a_dict_model(tmp_path_factory: pytest.TempPathFactory,
                                          changes: list[tuple[Op, int, int]], size: int) -> None:
    db = tmp_path_factory.mktemp("m") / "t.db"
    sink = await open_sink(SqliteSink(db, table="m", write_mode="upsert", primary_key=["id"]))
    model: dict[int, int] = {}
    for i in range(0, len(changes), size):
        chunk = changes[i:i + size]
        rows = [{"id": k} if op == Op.DELETE else {"id": k, "v": v} for op, k, v in chunk]
        await sink.write(Batch(rows, ops=[op for op, _, _ in chunk]))
        for op, k, v in chunk:
            if op == Op.DELETE:
                model.pop(k, None)
            else:
                model[k] = v
    await sink.close()
    exists = fetch(db, "SELECT 1 FROM sqlite_master WHERE name = 'm'")
    got = dict(fetch(db, "SELECT id, v FROM m")) if exists else {}
    assert got == model


async def test_overwrite_replaces_atomically_and_keeps_indexes(tmp_path: Path,
                                                              unique_name: str) -> None:
    db = tmp_path / "t.db"
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TABLE {unique_name} (id TEXT PRIMARY KEY, v TEXT)")
    conn.execute(f"CREATE INDEX {unique_name}_v ON {unique_name} (v)")
    conn.execute(f"INSERT INTO {unique_name} VALUES ('old', 'x')")
    conn.commit()
    src = tmp_path / "in.csv"
    src.write_text("id,v\n" + "".join(f"{i},v{i}\n" for i in range(10)))
    seen: list[list[tuple[Any, ...]]] = []

    class Peek(CollectingSink):
        async def write(self, batch: Batch) -> None:
            seen.append(conn.execute(f"SELECT id FROM {unique_name}").fetchall())

    await Pipeline(CsvSource(src, batch_size=3), [],
                   [SqliteSink(db, table=unique_name, write_mode="overwrite"), Peek()]).run()
    assert all(s == [("old",)] for s in seen[:-1])  # readers see the old table until the swap
    assert conn.execute(f"SELECT count(*) FROM {unique_name}").fetchone() == (10,)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert f"{unique_name}_v" in names and f"_etlsync_stage_{unique_name}" not in names
    conn.close()


async def test_overwrite_that_fails_mid_pass_keeps_the_old_table(tmp_path: Path,
                                                                unique_name: str) -> None:
    db = tmp_path / "t.db"
    sink = await open_sink(SqliteSink(db, table=unique_name))
    await sink.write(Batch([{"id": "old"}]))
    await sink.close()
    src = tmp_path / "in.csv"
    src.write_text("id\n" + "".join(f"{i}\n" for i in range(10)))

    class Boom(CollectingSink):
        async def write(self, batch: Batch) -> None:
            if batch.rows and batch.rows[0]["id"] == "6":
                raise RuntimeError("boom")

    store = MemoryCheckpointStore()
    with pytest.raises(StageError):
        await Pipeline(CsvSource(src, batch_size=3), [],
                       [SqliteSink(db, table=unique_name, write_mode="overwrite"), Boom()],
                       checkpoint_store=store).run()
    assert fetch(db, f"SELECT * FROM {unique_name}") == [("old",)]
    assert store.commits == []


class _RecordingStore(SqliteCheckpointStore):
    """A store that counts the runner's own commits."""

    commits = 0

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        type(self).commits += 1
        await super().commit(pipeline, checkpoint)


async def test_the_sink_owns_the_checkpoint_in_its_file(tmp_path: Path, unique_name: str) -> None:
    db = tmp_path / "t.db"
    rows = [{"id": i} for i in range(10)]

    class CrashAt6(SqliteSink):
        async def write(self, batch: Batch) -> None:
            if batch.rows and batch.rows[0]["id"] == 6:
                raise RuntimeError("crash")
            await super().write(batch)

    first = Pipeline(MemorySource(rows, batch_size=3), [Map(lambda r: r)],
                     [CrashAt6(db, table=unique_name)],
                     name=unique_name, checkpoint_store=_RecordingStore(db))
    with pytest.raises(StageError):
        await first.run()
    assert _RecordingStore.commits == 0  # every write of the row is the sink's
    conn = sqlite3.connect(db)
    stored = read_state(conn, unique_name)
    assert stored is not None and stored.position == 6 and stored.pass_open
    conn.close()
    # default store: the sink's own; the crashed pass resumes exactly where the data ends
    summary = await Pipeline(MemorySource(rows, batch_size=3), [],
                             [SqliteSink(db, table=unique_name)], name=unique_name).run()
    assert summary.rows_read == 4
    assert fetch(db, f"SELECT count(*), count(DISTINCT id) FROM {unique_name}") == [(10, 10)]
    assert _RecordingStore.commits == 0


async def test_describe_reports_the_target_schema(tmp_path: Path, unique_name: str) -> None:
    db = tmp_path / "t.db"
    sink = SqliteSink(db, table=unique_name, primary_key=["id"])
    assert await sink.describe() is None
    await open_sink(sink)
    await sink.write(Batch([{"id": 1, "p": Decimal("1.5")}]))
    await sink.close()
    schema = await sink.describe()
    assert schema is not None and schema.primary_key == ("id",)
    assert [c.type.value for c in schema.columns] == ["integer", "decimal"]


async def test_overwrite_from_a_source_without_pass_markers_reloads_each_run(
        tmp_path: Path, unique_name: str) -> None:
    db = tmp_path / "t.db"
    store = SqliteCheckpointStore(db)
    for n in (5, 3):
        rows = [{"id": i} for i in range(n)]
        await Pipeline(MemorySource(rows, batch_size=2), [],
                       [SqliteSink(db, table=unique_name, write_mode="overwrite")],
                       name=unique_name, checkpoint_store=store).run()
        assert fetch(db, f"SELECT id FROM {unique_name}") == [(i,) for i in range(n)]
    await store.close()


async def test_update_into_a_table_without_a_unique_key_adds_one(tmp_path: Path,
                                                                 unique_name: str) -> None:
    db = tmp_path / "t.db"
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TABLE {unique_name} (id INTEGER, v TEXT)")
    conn.execute(f"INSERT INTO {unique_name} VALUES (1, 'a')")
    conn.commit()
    conn.close()
    sink = await open_sink(SqliteSink(db, table=unique_name, primary_key=["id"]))
    await sink.write(Batch([{"id": 1, "v": "b"}, {"id": 2, "v": "c"}], ops=[Op.UPDATE] * 2))
    await sink.close()
    assert fetch(db, f"SELECT * FROM {unique_name} ORDER BY id") == [(1, "b"), (2, "c")]


async def test_values_needing_the_mapping_after_a_plain_first_row(
        tmp_path: Path, unique_name: str, record_form: bool) -> None:
    db = tmp_path / "t.db"
    sink = await open_sink(SqliteSink(db, table=unique_name))
    await sink.write(batch_of([{"id": 1, "p": None, "at": None}, {"id": 2, "p": None, "at": None}],
                              record_form))
    await sink.write(batch_of([{"id": 3, "p": None, "at": None},
                               {"id": 4, "p": Decimal("2.50"), "at": dt.datetime(2024, 1, 2, 3)},
                               {"id": 5, "p": {"k": 1}, "at": dt.date(2024, 1, 2)}], record_form))
    await sink.close()
    assert fetch(db, f"SELECT p, at FROM {unique_name} WHERE id > 3") == [
        ("2.50", "2024-01-02 03:00:00"), ('{"k":1}', "2024-01-02")]
    assert fetch(db, f"SELECT count(*) FROM {unique_name}") == [(5,)]


@pytest.mark.parametrize("max_variables", [32766, 7, 3])
async def test_large_batches_apply_rows_in_order_whatever_rows_fit_a_statement(
        tmp_path: Path, unique_name: str, record_form: bool, max_variables: int) -> None:
    """Inserts go many rows per statement (as many as SQLite's variable limit allows, one
    per statement when a row alone reaches it); later rows of a key still win, in order."""
    db = tmp_path / "t.db"
    sink = await open_sink(SqliteSink(db, table=unique_name, write_mode="upsert",
                                      primary_key=["k"], conflict="merge"))
    sink._max_variables = max_variables
    rows = [{"k": i % 501, "v": i, "s": f"row {i}"} for i in range(1_234)]
    await sink.write(batch_of(rows, record_form))
    await sink.write(batch_of([{"k": 7, "v": -1, "s": "last"}], record_form))
    await sink.close()
    model: dict[int, tuple[int, int, str]] = {}
    for r in [*rows, {"k": 7, "v": -1, "s": "last"}]:
        model[r["k"]] = (r["k"], r["v"], r["s"])
    assert fetch(db, f"SELECT k, v, s FROM {unique_name} ORDER BY k") == sorted(model.values())


async def test_a_conflict_deep_in_a_large_batch_rolls_the_whole_batch_back(
        tmp_path: Path, unique_name: str, record_form: bool) -> None:
    db = tmp_path / "t.db"
    sink = await open_sink(SqliteSink(db, table=unique_name, write_mode="upsert",
                                      primary_key=["k"], conflict="fail"))
    await sink.write(batch_of([{"k": 10_000, "v": 0}], record_form))
    rows = [{"k": i, "v": i} for i in range(1_000)] + [{"k": 10_000, "v": 1}]
    with pytest.raises(ConflictError, match=r"key \{'k': 10000\} already exists"):
        await sink.write(batch_of(rows, record_form))
    await sink.close()
    assert fetch(db, f"SELECT k, v FROM {unique_name}") == [(10_000, 0)]
