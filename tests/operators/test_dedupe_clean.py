"""Dedupe (bounded, windowed, restart-safe), clean, split and merge columns."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etlsync import Batch, MemoryCheckpointStore, Op, Pipeline
from etlsync.core.errors import ConfigError, StageError
from etlsync.operators import Clean, Dedupe, MergeColumns, SplitColumns, StateLimitExceeded
from etlsync.testing import CollectingSink, MemorySource


async def run(ops: list[Any], rows: list[dict[str, Any]], batch: int = 10, **kw: Any
              ) -> list[dict[str, Any]]:
    sink = CollectingSink()
    await Pipeline(MemorySource(rows, batch, **kw), ops, sink).run()
    return sink.rows


@settings(max_examples=50, deadline=None)
@given(keys=st.lists(st.integers(0, 30), max_size=300), batch=st.integers(1, 50))
async def test_dedupe_keeps_the_first_row_of_each_key(keys: list[int], batch: int) -> None:
    rows = [{"id": k, "seq": i} for i, k in enumerate(keys)]
    got = await run([Dedupe("id")], rows, batch)
    first: dict[int, dict[str, Any]] = {}
    for r in rows:
        first.setdefault(r["id"], r)
    assert got == sorted(first.values(), key=lambda r: r["seq"])


@settings(max_examples=40, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), max_size=200),
       a=st.integers(1, 40), b=st.integers(1, 40))
async def test_windowed_dedupe_matches_a_reference_and_ignores_batching(
        events: list[tuple[int, int]], a: int, b: int) -> None:
    rows, t = [], 0
    for k, step in events:
        t += step
        rows.append({"id": k, "ts": t})
    ref, last = [], {}
    for r in rows:  # a key repeats only less than 10 s after the row that was kept
        kept = last.get(r["id"])
        if kept is None or r["ts"] - kept >= 10:
            ref.append(r)
            last[r["id"]] = r["ts"]
    for size in (a, b):
        assert await run([Dedupe("id", within="10s", time_column="ts")], rows, size) == ref


async def test_dedupe_is_bounded_and_evicts_or_fails() -> None:
    rows = [{"id": i % 50} for i in range(200)]
    op = Dedupe("id", max_keys=10)
    got = await run([op], rows)
    assert len(op.seen) == 10 and op.evicted > 0
    assert len(got) == 200  # 50 keys cycling through 10 slots: every row looks new
    with pytest.raises(StageError) as info:
        await run([Dedupe("id", max_keys=10, on_full="fail")], rows)
    assert isinstance(info.value.cause, StateLimitExceeded)


async def test_dedupe_state_survives_a_restart() -> None:
    rng = random.Random(5)
    rows = [{"id": rng.randrange(300), "n": i} for i in range(3000)]
    store = MemoryCheckpointStore()
    calls = {"n": 0}

    def crash(batch: Batch) -> None:
        calls["n"] += 1
        if calls["n"] == 40:
            raise OSError("crash")

    sink = CollectingSink(fail_on=crash)
    with pytest.raises(StageError):
        await Pipeline(MemorySource(rows, 25), [Dedupe("id")], sink, name="d",
                       checkpoint_store=store).run()
    await Pipeline(MemorySource(rows, 25), [Dedupe("id")], sink, name="d",
                   checkpoint_store=store).run()
    assert sorted(r["id"] for r in sink.rows) == sorted({r["id"] for r in rows})


async def test_dedupe_passes_deletes_and_keeps_arrow_form() -> None:
    pa = pytest.importorskip("pyarrow")
    op = Dedupe("id")
    out = await op.process(Batch([{"id": 1}, {"id": 1}, {"id": 1}],
                                 ops=[Op.INSERT, Op.INSERT, Op.DELETE]))
    assert isinstance(out, Batch) and out.ops == [Op.INSERT, Op.DELETE]
    table = pa.table({"id": [1, 2, 2, 3]})
    out = await Dedupe("id").process(Batch.from_arrow(table))
    assert isinstance(out, Batch) and out.form == "arrow" and out.arrow.column("id").to_pylist() == [1, 2, 3]


async def test_clean_trims_normalises_nulls_replaces_changes_case_and_fills_defaults() -> None:
    rows = [{"name": "  Ann  ", "phone": "(555) 123-4567", "city": "n/a", "tier": None, "n": 3},
            {"name": "BOB", "phone": "555.987.6543", "city": " Oslo ", "tier": "gold", "n": 4}]
    op = Clean(nulls=["", "n/a"], replace={"phone": [[r"\D", ""]]},
               case={"name": "title", "city": "upper"}, defaults={"tier": "basic"})
    got = await run([op], rows)
    assert got == [{"name": "Ann", "phone": "5551234567", "city": None, "tier": "basic", "n": 3},
                   {"name": "Bob", "phone": "5559876543", "city": "OSLO", "tier": "gold", "n": 4}]
    assert op.changed == 7
    with pytest.raises(ConfigError, match="bad pattern"):
        Clean(replace={"x": [["(", ""]]})


async def test_split_and_merge_columns() -> None:
    rows = [{"id": 1, "full": "Ada Lovelace", "addr": "10 Downing St, London"},
            {"id": 2, "full": "Plato", "addr": None}]
    split = SplitColumns("full", ["first", "last"], delimiter=" ")
    regex = SplitColumns("addr", regex=r"^(?P<street>[^,]+),\s*(?P<town>.+)$", keep=True)
    merge = MergeColumns("label", template="{last}, {first} (#{id}) {{x}}")
    got = await run([split, regex, merge], rows)
    assert got[0] == {"id": 1, "addr": "10 Downing St, London", "first": "Ada",
                      "last": "Lovelace", "street": "10 Downing St", "town": "London",
                      "label": "Lovelace, Ada (#1) {x}"}
    assert got[1]["last"] is None and got[1]["street"] is None
    assert got[1]["label"] == ", Plato (#2) {x}"
    joined = await run([MergeColumns("both", ["first", "last"], separator="-", drop=True)],
                       [{"first": "a", "last": None}, {"first": "b", "last": "c"}])
    assert joined == [{"both": "a"}, {"both": "b-c"}]
    with pytest.raises(ConfigError, match="lone"):
        MergeColumns("x", template="{a} }")
    with pytest.raises(ConfigError, match="groups"):
        SplitColumns("a", ["x"], regex=r"(\d)-(\d)")
    with pytest.raises(StageError, match="does not match"):
        await run([SplitColumns("a", ["x", "y"], regex=r"(\d)-(\d)", on_mismatch="fail")],
                  [{"a": "1-2"}, {"a": "zz"}])
