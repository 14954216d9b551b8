"""Select and Rename: columns, change kinds, old images and schemas stay aligned."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etlsync import Batch, Column, ColumnType, ConfigError, DataError, Op, Pipeline, Schema
from etlsync.operators import Rename, Select
from etlsync.testing import CollectingSink, MemorySource

SCHEMA = Schema((Column("id", ColumnType.INTEGER), Column("name"), Column("price")), ("id",))


async def test_select_keeps_listed_columns_in_order() -> None:
    batch = Batch([{"id": 1, "name": "a", "price": "1"}], stream="s", schema=SCHEMA)
    out = await Select(["price", "id"]).process(batch)
    assert isinstance(out, Batch)
    assert out.rows == [{"price": "1", "id": 1}]
    assert out.schema is not None and out.schema.names == ["price", "id"]
    assert out.schema.primary_key == ("id",)


async def test_select_fills_missing_columns_with_none_unless_strict() -> None:
    batch = Batch([{"id": 1}], stream="s")
    out = await Select(["id", "name"]).process(batch)
    assert isinstance(out, Batch) and out.rows == [{"id": 1, "name": None}]
    with pytest.raises(DataError, match=r"lacks column.*name"):
        await Select(["id", "name"], strict=True).process(batch)


async def test_select_keeps_ops_and_before_images_aligned() -> None:
    batch = Batch([{"id": 1, "x": 1}, {"id": 2, "x": 2}], ops=[Op.UPDATE, Op.DELETE],
                  before=[{"id": 1, "x": 0}, None])
    out = await Select(["id"]).process(batch)
    assert isinstance(out, Batch)
    assert out.ops == [Op.UPDATE, Op.DELETE]
    assert out.before == [{"id": 1}, None]


def test_select_rejects_empty_and_duplicate_columns() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        Select([])
    with pytest.raises(ConfigError, match="twice: a"):
        Select(["a", "b", "a"])


async def test_rename_renames_rows_schema_and_primary_key() -> None:
    batch = Batch([{"id": 1, "name": "a", "price": "1"}], schema=SCHEMA,
                  ops=[Op.UPDATE], before=[{"id": 1, "name": "b", "price": "1"}])
    out = await Rename({"id": "order_id", "name": "customer"}).process(batch)
    assert isinstance(out, Batch)
    assert out.rows == [{"order_id": 1, "customer": "a", "price": "1"}]
    assert out.before == [{"order_id": 1, "customer": "b", "price": "1"}]
    assert out.schema is not None and out.schema.primary_key == ("order_id",)
    assert out.schema.names == ["order_id", "customer", "price"]


async def test_rename_onto_an_existing_column_is_a_data_error() -> None:
    with pytest.raises(DataError, match="price exist already"):
        await Rename({"name": "price"}).process(Batch([{"name": "a", "price": 1}]))


def test_rename_rejects_two_columns_with_one_new_name() -> None:
    with pytest.raises(ConfigError, match="several columns renamed to x"):
        Rename({"a": "x", "b": "x"})


names = st.text("abcdefgh", min_size=1, max_size=4)


@settings(deadline=None)  # a loaded shared machine must not make it flaky
@given(st.lists(st.dictionaries(names, st.integers(), min_size=1, max_size=5), max_size=20),
       st.data())
async def test_rename_then_inverse_is_identity(rows: list[dict[str, int]],
                                               data: st.DataObject) -> None:
    cols = sorted({k for r in rows for k in r})
    if not cols:
        return
    chosen = data.draw(st.lists(st.sampled_from(cols), unique=True, min_size=1))
    mapping = {c: f"new_{c}" for c in chosen}
    there = await Rename(mapping).process(Batch([dict(r) for r in rows]))
    assert isinstance(there, Batch)
    back = await Rename({v: k for k, v in mapping.items()}).process(there)
    assert isinstance(back, Batch)
    assert back.rows == rows


async def test_select_and_rename_in_a_pipeline_commit_the_last_position() -> None:
    rows = [{"id": i, "name": str(i), "junk": 0} for i in range(250)]
    sink = CollectingSink()
    summary = await Pipeline(MemorySource(rows, batch_size=100),
                             [Select(["id", "name"]), Rename({"name": "label"})], [sink],
                             name="cols").run()
    assert sink.rows[-1] == {"id": 249, "label": "249"}
    assert len(sink.rows) == 250
    assert summary.rows_written == 250


async def test_select_with_rename_selects_and_renames_in_one_step() -> None:
    op = Select(["price", "id"], rename={"id": "order_id"})
    batch = Batch([{"id": 1, "name": "a", "price": "1"}, {"name": "b"}], schema=SCHEMA,
                  ops=[Op.INSERT, Op.DELETE], before=[None, {"id": 2, "price": "0"}])
    out = await op.process(batch)
    assert isinstance(out, Batch)
    assert out.rows == [{"price": "1", "order_id": 1}, {"price": None, "order_id": None}]
    assert out.before == [None, {"price": "0", "order_id": 2}]
    assert out.schema is not None and out.schema.names == ["price", "order_id"]
    assert out.schema.primary_key == ("order_id",)
    with pytest.raises(ConfigError, match="several columns would be called a"):
        Select(["a", "b"], rename={"b": "a"})


@settings(deadline=None)
@given(st.lists(names, min_size=1, max_size=5, unique=True), st.data())
async def test_select_and_rename_give_the_same_rows_in_record_form(
        columns: list[str], data: st.DataObject) -> None:
    records = data.draw(st.lists(st.tuples(*[st.integers()] * len(columns)), max_size=10))
    rows = [dict(zip(columns, r, strict=True)) for r in records]
    wanted = data.draw(st.lists(names, min_size=1, max_size=4, unique=True))
    renamed = data.draw(st.lists(st.sampled_from(columns), unique=True))
    for op in (Select(wanted), Rename({c: c.upper() for c in renamed}) if renamed else None):
        if op is None:
            continue
        by_dicts = await op.process(Batch([dict(r) for r in rows]))
        by_records = await op.process(Batch.from_records(columns, list(records)))
        assert isinstance(by_dicts, Batch) and isinstance(by_records, Batch)
        if records:
            assert by_records.records is not None  # no dict was built on the way
        assert by_records.rows == by_dicts.rows
        assert [list(r) for r in by_records.rows] == [list(r) for r in by_dicts.rows]


async def test_strict_select_and_rename_clash_in_record_form_name_the_column() -> None:
    batch = Batch.from_records(("id",), [(1,)], stream="s")
    with pytest.raises(DataError, match=r"lacks column.*name"):
        await Select(["id", "name"], strict=True).process(batch)
    with pytest.raises(DataError, match="price exist already"):
        await Rename({"name": "price"}).process(Batch.from_records(("name", "price"), [("a", 1)]))
