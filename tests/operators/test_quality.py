"""Quality rules: each failing row reaches the dead-letter sink with its rule; counters per
rule in the run summary; warn / quarantine / fail; unique across batches and restarts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etlsync import MemoryCheckpointStore, Pipeline
from etlsync.core.errors import ConfigError, StageError
from etlsync.operators import MemoryLookup, Quality, RowsRejected, Rule
from etlsync.resilience import ErrorPolicy, MemoryDeadLetterSink
from etlsync.testing import CollectingSink, MemorySource

RULES = [
    {"not_null": ["id", "email"]},
    {"unique": "id"},
    {"range": "amount", "min": 0, "max": 1000},
    {"regex": "email", "pattern": r"^[^@\s]+@[^@\s]+\.[a-z]+$"},
    {"accepted": "status", "values": ["paid", "pending"]},
    {"expression": "quantity * 2 < 100", "name": "small_order", "action": "warn"},
]


def _expected_failures(row: dict[str, Any], seen: set[Any]) -> list[str]:
    import re

    failed = []
    if row["id"] is None or row["email"] is None:
        failed.append("not_null(id, email)")
    if row["amount"] is not None and not 0 <= row["amount"] <= 1000:
        failed.append("range(amount)")
    if row["email"] is not None and not re.search(r"^[^@\s]+@[^@\s]+\.[a-z]+$", row["email"]):
        failed.append("regex(email)")
    if row["status"] is not None and row["status"] not in ("paid", "pending"):
        failed.append("accepted(status)")
    if row["quantity"] * 2 >= 100:
        failed.append("small_order")
    if row["id"] is not None and row["id"] in seen:
        failed.append("unique(id)")
    elif row["id"] is not None and not [f for f in failed if f != "small_order"]:
        seen.add(row["id"])
    return failed


row_strategy = st.fixed_dictionaries({
    "id": st.integers(0, 40) | st.none(),
    "email": st.sampled_from(["a@b.io", "bad", None, "c@d.org", "x y@z.com"]),
    "amount": st.integers(-5, 1005) | st.none(),
    "status": st.sampled_from(["paid", "pending", "void", None]),
    "quantity": st.integers(0, 60),
})


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(row_strategy, max_size=120), batch=st.integers(1, 30))
async def test_failing_rows_go_to_dead_letters_with_their_rules_and_are_counted(
        rows: list[dict[str, Any]], batch: int) -> None:
    rows = [{**r, "n": i} for i, r in enumerate(rows)]
    dl = MemoryDeadLetterSink()
    sink = CollectingSink()
    summary = await Pipeline(MemorySource(rows, batch), [Quality(RULES, dead_letter=dl)], sink,
                             name="q").run()
    seen: set[Any] = set()
    expected = {r["n"]: _expected_failures(r, seen) for r in rows}
    quarantined = {n for n, f in expected.items() if [x for x in f if x != "small_order"]}
    assert [r["n"] for r in sink.rows] == [r["n"] for r in rows if r["n"] not in quarantined]
    assert [d.row["n"] for d in dl.letters] == sorted(quarantined)
    for d in dl.letters:
        failed = [x for x in expected[d.row["n"]]]
        assert all(f in d.reason for f in failed if f != "unique(id)" or "unique" in d.reason)
        assert d.stage == "op:quality" and d.pipeline == "q"
    counts = summary.stages["op:quality"].extra["rules"]
    for name in ("not_null(id, email)", "range(amount)", "regex(email)", "accepted(status)",
                 "small_order", "unique(id)"):
        assert counts[name]["failed"] == sum(name in f for f in expected.values()), name
        assert counts[name]["checked"] == len(rows)


async def test_a_fail_rule_stops_the_run_and_warn_keeps_rows() -> None:
    rows = [{"id": 1, "v": 5}, {"id": 2, "v": -1}]
    with pytest.raises(StageError) as info:
        await Pipeline(MemorySource(rows), [Quality([{"range": "v", "min": 0,
                                                      "action": "fail"}])],
                       CollectingSink()).run()
    assert isinstance(info.value.cause, RowsRejected) and "range(v)" in str(info.value)
    sink = CollectingSink()
    op = Quality([Rule("range", ["v"], min=0, action="warn")])
    await Pipeline(MemorySource(rows), [op], sink).run()
    assert sink.rows == rows and op.warned == 1


async def test_referential_rule_looks_values_up() -> None:
    lookup = MemoryLookup([{"id": 1}, {"id": 2}], "id")
    sink = CollectingSink()
    op = Quality([Rule("referential", ["customer"], lookup=lookup)],
                 quarantine_to="side_output")
    rows = [{"customer": c} for c in (1, 3, None, 2, 3)]
    await Pipeline(MemorySource(rows, 10, stream="orders"), [op], sink).run()
    main = [r for b in sink.batches if b.stream == "orders" for r in b.rows]
    side = [r for b in sink.batches if b.stream == "orders.quarantine" for r in b.rows]
    assert main == [{"customer": 1}, {"customer": None}, {"customer": 2}]
    assert [r["customer"] for r in side] == [3, 3] and "referential" in side[0]["_reason"]
    assert lookup.fetches == 1  # one batched lookup; the repeated 3 came from the cache


async def test_unique_survives_a_restart_and_the_job_dead_letter_sink_is_used() -> None:
    store = MemoryCheckpointStore()
    dl = MemoryDeadLetterSink()
    policy = ErrorPolicy(dead_letter=dl)
    rows = [{"id": i % 30} for i in range(100)]
    sink = CollectingSink()
    await policy.pipeline(MemorySource(rows[:50], 10), [Quality([{"unique": "id"}])], [sink],
                          name="u", checkpoint_store=store).run()
    # a new run of a new pass: the first run's ids are still known
    await policy.pipeline(MemorySource(rows[50:], 10), [Quality([{"unique": "id"}])], [sink],
                          name="u", checkpoint_store=store).run()
    assert sorted(r["id"] for r in sink.rows) == list(range(30))
    assert len(dl.letters) == 70 and all("unique(id)" in d.reason for d in dl.letters)


def test_rule_specifications_are_checked() -> None:
    for spec in ({"nope": "x"}, {"range": "x"}, {"regex": "x", "pattern": "("},
                 {"not_null": "x", "action": "explode"}, {"accepted": "x"},
                 {"not_null": "x", "range": "y", "min": 1}, {"not_null": "x", "wat": 1}):
        with pytest.raises(ConfigError):
            Quality([spec])
    with pytest.raises(ConfigError, match="dead-letter"):
        import asyncio

        from etlsync.core.stages import StageContext

        asyncio.run(Quality([{"not_null": "x"}]).open(StageContext("p", "op:q", None)))
