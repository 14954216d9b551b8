"""Resilient sinks and operators: retries, breaker, bisection of bad rows, dead letters."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import Batch, MemoryCheckpointStore, Op, Pipeline, StageError
from etlsync.connectors.sqlite import SqliteSink
from etlsync.core.capabilities import Capability
from etlsync.core.stages import Operator, Sink, StageContext
from etlsync.operators import Map
from etlsync.resilience import (
    BreakerState,
    CircuitBreaker,
    MemoryDeadLetterSink,
    Resilient,
    ResilientOperator,
    RetryPolicy,
    TokenBucket,
    TooManyBadRows,
)
from etlsync.testing import CollectingSink, MemorySource
from tests.resilience.helpers import FlakySink, ValidatingSink, row_problem


def fast_retry(**kw: Any) -> RetryPolicy:
    opts: dict[str, Any] = {"max_attempts": None, "base_delay": 0.0005, "max_delay": 0.005,
                            "max_elapsed": 60.0}
    opts.update(kw)
    return RetryPolicy(**opts)


def clean_rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "amount": i * 1.5, "name": f"n{i}"} for i in range(n)]


async def test_20pct_transient_sink_failures_deliver_everything_once() -> None:
    rows = clean_rows(50_000)
    flaky = FlakySink(p=0.2, seed=7)
    sink = Resilient(flaky, retry=fast_retry())
    summary = await Pipeline(MemorySource(rows, 500), sinks=[sink], name="flaky").run()
    assert flaky.rows == rows  # every row, once, in order
    assert flaky.failures > 10
    assert sink.metrics["retries"] == flaky.failures
    assert summary.committed_position == len(rows)
    # the kernel's per-stage metrics carry the wrapper's counters (StageMetrics.extra)
    assert summary.stages["sink:flaky"].extra["retries"] == flaky.failures


class OutageSink(FlakySink):
    """Goes down at its 5th write and stays down until ``recover()``."""

    outage_done = False

    async def write(self, batch: Batch) -> None:
        if self.writes == 4 and not self.outage_done:
            self.dead = True
        await super().write(batch)

    def recover(self) -> None:
        self.dead, self.outage_done = False, True


async def test_breaker_opens_under_dead_sink_and_closes_on_recovery() -> None:
    rows = clean_rows(20_000)
    flaky = OutageSink()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=0.02, name="dead-sink")
    sink = Resilient(flaky, retry=fast_retry(), breaker=breaker)
    pipeline = Pipeline(MemorySource(rows, 1000), sinks=[sink], name="dead")
    seen: list[str] = []

    async def outage() -> None:
        while not flaky.dead:
            await asyncio.sleep(0.001)
        for _ in range(40):  # watch the live counters while the sink is down
            seen.append(sink.metrics["breaker_state"])
            await asyncio.sleep(0.005)
        flaky.recover()

    task = asyncio.create_task(outage())
    await pipeline.run()
    await task
    assert "open" in seen or "half_open" in seen
    assert breaker.stats.opened >= 1 and breaker.stats.closed >= 1
    assert breaker.state is BreakerState.CLOSED
    assert breaker.stats.rejected > 0  # calls were refused while open, not sent
    assert flaky.rows == rows


class BreakingSink(FlakySink):
    """After one failure the 'connection' stays broken until the sink is reopened."""

    broken = False

    async def open(self, context: StageContext) -> None:
        await super().open(context)
        self.broken = False

    async def write(self, batch: Batch) -> None:
        if self.broken:
            raise ConnectionResetError("connection is closed")
        if self.writes in (3, 9, 10):
            self.writes += 1
            self.broken = True
            raise ConnectionResetError("cut")
        await super().write(batch)


async def test_reconnect_reopens_sink_after_connection_loss() -> None:
    rows = clean_rows(5000)
    inner = BreakingSink()
    sink = Resilient(inner, retry=fast_retry())
    await Pipeline(MemorySource(rows, 250), sinks=[sink]).run()
    assert inner.rows == rows
    assert inner.opens >= 3 and sink.stats.reconnects >= 2


dirty_values = st.one_of(
    st.fixed_dictionaries({"id": st.text(max_size=3), "amount": st.just(1), "name": st.just("x")}),
    st.fixed_dictionaries({"id": st.integers(0, 10), "amount": st.floats(allow_nan=True).filter(
        lambda f: not 0 <= f <= 1e9), "name": st.just("x")}),
    st.fixed_dictionaries({"id": st.integers(0, 10), "amount": st.just(2),
                           "name": st.one_of(st.none(), st.just("a\x00b"), st.integers())}),
)
clean_values = st.fixed_dictionaries({
    "id": st.integers(0, 10**6), "amount": st.floats(0, 1e9), "name": st.text(
        alphabet=st.characters(blacklist_characters="\x00"), max_size=8)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.booleans(), st.integers(0, 10**9)), max_size=300),
       dirty=st.lists(dirty_values, min_size=1, max_size=300),
       clean=st.lists(clean_values, min_size=1, max_size=300),
       batch_size=st.integers(1, 64))
async def test_dirty_rows_go_to_dead_letters_with_reason(
        rows: list[tuple[bool, int]], dirty: list[dict[str, Any]],
        clean: list[dict[str, Any]], batch_size: int) -> None:
    mixed = [(dict(dirty[k % len(dirty)]) if is_dirty else dict(clean[k % len(clean)]))
             for is_dirty, k in rows]
    for i, r in enumerate(mixed):
        r["seq"] = i
    dlq = MemoryDeadLetterSink()
    target = ValidatingSink()
    sink = Resilient(target, on_bad_data="dead_letter", dead_letter=dlq, retry=fast_retry())
    await Pipeline(MemorySource(mixed, batch_size), sinks=[sink], name="dirty").run()
    expected_bad = [r for r in mixed if row_problem(r) is not None]
    expected_good = [r for r in mixed if row_problem(r) is None]
    assert target.rows == expected_good  # all clean rows, once, in order
    assert [x.row for x in dlq.letters] == expected_bad  # no clean row, every dirty one
    for letter in dlq.letters:
        assert letter.error == row_problem(letter.row)
        assert letter.error_type == "DataError" and letter.kind == "bad_data"
        assert letter.stage == "sink:validating" and letter.pipeline == "dirty"
        assert letter.position == (letter.row["seq"] // batch_size + 1) * batch_size or (
            letter.position == len(mixed))
    # a transactional sink is offered each checkpoint at most once, never out of order
    seqs = [c.seq for c in target.checkpoints]
    assert seqs == sorted(set(seqs)) and target.positions == sorted(target.positions)
    assert sink.stats.bad_rows == len(expected_bad)


async def test_skip_policy_drops_bad_rows() -> None:
    rows = clean_rows(100)
    rows[10]["amount"] = -1
    rows[99]["id"] = "x"
    target = ValidatingSink()
    sink = Resilient(target, on_bad_data="skip")
    await Pipeline(MemorySource(rows, 32), sinks=[sink]).run()
    assert target.rows == [r for i, r in enumerate(rows) if i not in (10, 99)]
    assert sink.stats.skipped == 2 and sink.stats.dead_lettered == 0


async def test_fail_policy_raises_data_error() -> None:
    rows = clean_rows(10)
    rows[5]["amount"] = -1
    sink = Resilient(ValidatingSink(), on_bad_data="fail")
    with pytest.raises(StageError) as info:
        await Pipeline(MemorySource(rows, 4), sinks=[sink]).run()
    assert type(info.value.cause).__name__ == "DataError"


async def test_bad_ratio_threshold_stops_pipeline() -> None:
    rows = clean_rows(1000)
    for i in range(0, 1000, 10):
        rows[i]["amount"] = -5  # 10% bad
    dlq = MemoryDeadLetterSink()
    target = ValidatingSink()
    sink = Resilient(target, on_bad_data="dead_letter", dead_letter=dlq, max_bad_ratio=0.05,
                     min_rows_for_ratio=200)
    store = MemoryCheckpointStore()
    with pytest.raises(StageError) as info:
        await Pipeline(MemorySource(rows, 100), sinks=[sink], checkpoint_store=store).run()
    assert isinstance(info.value.cause, TooManyBadRows)
    assert len(dlq.letters) == 20  # stopped at the first check past 200 rows
    # the failing batch's rows are durable (good in target, bad in dead letters)
    assert len(target.rows) == 180


async def test_change_batches_keep_ops_through_bisection() -> None:
    class ChangeSource(MemorySource):
        async def read(self, position: Any):  # type: ignore[no-untyped-def, override]
            rows = clean_rows(8)
            rows[3]["amount"] = -1
            ops = [Op.INSERT, Op.UPDATE, Op.DELETE, Op.UPDATE] * 2
            before = [None, {"id": 1}, {"id": 2}, {"id": 3}] * 2
            yield Batch(rows, stream="t", position=8, ops=ops, before=before)

    class OpSink(ValidatingSink):
        async def write(self, batch: Batch) -> None:
            await super().write(batch)
            self.ops = [*getattr(self, "ops", []), *(batch.ops or [])]

    dlq = MemoryDeadLetterSink()
    target = OpSink()
    await Pipeline(ChangeSource([]), sinks=[Resilient(target, on_bad_data="dead_letter",
                                                      dead_letter=dlq)]).run()
    assert target.ops == [Op.INSERT, Op.UPDATE, Op.DELETE, Op.INSERT, Op.UPDATE, Op.DELETE,
                          Op.UPDATE]
    (letter,) = dlq.letters
    assert letter.op == "update" and letter.before == {"id": 3} and letter.stream == "t"


async def test_resilient_operator_isolates_failing_rows() -> None:
    def convert(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "cents": int(str(row["price"]).replace(".", ""))}

    rows = [{"id": i, "price": "1.25" if i % 7 else "n/a"} for i in range(50)]
    dlq = MemoryDeadLetterSink()
    op = ResilientOperator(Map(convert), on_bad_data="dead_letter", dead_letter=dlq,
                           pipeline="prices")
    out = CollectingSink()
    await Pipeline(MemorySource(rows, 16), [op], [out], name="prices").run()
    assert [r["id"] for r in out.rows] == [i for i in range(50) if i % 7]
    assert [x.row["id"] for x in dlq.letters] == [i for i in range(50) if i % 7 == 0]
    assert all(x.error_type == "ValueError" and x.stage.startswith("op:") for x in dlq.letters)


async def test_rate_limit_in_rows_per_second() -> None:
    rows = clean_rows(3000)
    sink = Resilient(CollectingSink(), rate_limit=TokenBucket(rate=20_000, burst=1000))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await Pipeline(MemorySource(rows, 500), sinks=[sink]).run()
    assert loop.time() - t0 >= (3000 - 1000) / 20_000 * 0.9
    assert sink.stats.rate_limited_seconds > 0


async def test_permanent_error_is_not_retried() -> None:
    class Denied(Sink):
        calls = 0

        async def write(self, batch: Batch) -> None:
            Denied.calls += 1
            raise PermissionError("access denied")

    with pytest.raises(StageError):
        await Pipeline(MemorySource(clean_rows(5)), sinks=[Resilient(Denied())]).run()
    assert Denied.calls == 1


class _Unused(Operator):
    async def process(self, batch: Batch) -> Batch:
        return batch


async def test_size_dependent_rejection_condemns_no_row() -> None:
    class TooLarge(Exception):
        status_code = 413  # HTTP "payload too large": classified bad data

    class SmallBatchesOnly(CollectingSink):
        async def write(self, batch: Batch) -> None:
            if len(batch.rows) > 10:
                raise TooLarge("payload too large")
            await super().write(batch)

    dlq = MemoryDeadLetterSink()
    target = SmallBatchesOnly()
    sink = Resilient(target, on_bad_data="dead_letter", dead_letter=dlq)
    rows = clean_rows(1000)
    await Pipeline(MemorySource(rows, 300), sinks=[sink]).run()
    assert target.rows == rows and dlq.letters == []


def test_wrapper_exposes_the_wrapped_sinks_attributes() -> None:
    inner = CollectingSink("warehouse")
    sink = Resilient(inner)
    assert sink.name == "warehouse" and sink.batches is inner.batches
    with pytest.raises(AttributeError):
        _ = sink.no_such_attribute


async def test_error_policy_wraps_every_stage_of_a_pipeline() -> None:
    from etlsync.resilience import ErrorPolicy, ResilientSource

    def parse(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "amount": float(row["amount"])}

    rows = [{"id": i, "amount": "x" if i == 3 else (-1 if i == 7 else i), "name": "n"}
            for i in range(20)]
    dlq = MemoryDeadLetterSink()
    flaky = ValidatingSink()
    policy = ErrorPolicy(on_bad_data="dead_letter", dead_letter=dlq,
                         retry=fast_retry(), breaker={"failure_threshold": 3,
                                                      "reset_timeout": 0.01})
    pipeline = policy.pipeline(MemorySource(rows, 6), [Map(parse)], [flaky], name="orders")
    assert isinstance(pipeline.source, ResilientSource)
    summary = await pipeline.run()
    assert [r["id"] for r in flaky.rows] == [i for i in range(20) if i not in (3, 7)]
    assert [(x.row["id"], x.stage) for x in dlq.letters] == [(3, "op:map"),
                                                             (7, "sink:validating")]
    assert all(x.pipeline == "orders" for x in dlq.letters)
    assert summary.stages["sink:validating"].extra["dead_lettered"] == 1


async def test_sink_reconnect_hook_is_preferred_to_close_and_open() -> None:
    class Reconnecting(BreakingSink):
        reconnects = 0

        async def reconnect(self) -> None:
            Reconnecting.reconnects += 1
            self.broken = False

    inner = Reconnecting()
    rows = clean_rows(2000)
    await Pipeline(MemorySource(rows, 100), sinks=[Resilient(inner, retry=fast_retry())]).run()
    assert inner.rows == rows
    assert Reconnecting.reconnects >= 2 and inner.opens == 1 and inner.closes == 1


async def test_a_wrapped_overwrite_sink_still_installs_a_complete_pass(tmp_path: Path) -> None:
    """An error policy around an overwrite sink used to hide the end of the pass from it
    (its context kept its own ``source_exhausted = False``), so the table never swapped."""
    db = tmp_path / "t.db"
    rows = [{"id": i, "v": str(i)} for i in range(10)]
    sink = Resilient(SqliteSink(db, table="t", write_mode="overwrite"), retry=fast_retry())
    summary = await Pipeline(MemorySource(rows, batch_size=3), [], sink, name="p").run()
    assert summary.status == "completed"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (10,)
    conn.close()


async def test_a_wrapped_transactional_sink_keeps_its_capabilities_and_store(tmp_path: Path) -> None:
    inner = SqliteSink(tmp_path / "t.db", table="t")
    wrapped = Resilient(inner)
    assert Capability.TRANSACTIONAL in wrapped.capabilities
    store = wrapped.checkpoint_store()
    assert store is not None and store.location == inner.checkpoint_store().location
