"""Stateful operators in the runner: snapshots on tickets, StateInterval resume points, no
flush on stop, open/close, and a restart that neither loses nor double counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from etlsync import Batch, MemoryCheckpointStore, Operator, Pipeline, Source, StateInterval
from etlsync.core.capabilities import Capability
from etlsync.core.errors import StageError
from etlsync.core.stages import OperatorOutput, StageContext
from etlsync.testing import CollectingSink, MemorySource


class Summer(Operator):
    """Sums ``v``; emits the running total every ``every`` batches and at the end of a pass."""

    capabilities = frozenset({Capability.STATEFUL})

    def __init__(self, every: int = 0) -> None:
        self.name = "sum"
        self.total = 0
        self.batches = 0
        self.every = every
        self.snapshots = 0
        self.opened = self.closed = 0
        self.flushed = 0

    async def open(self, context: StageContext) -> None:
        self.opened += 1
        self.pipeline = context.pipeline

    async def close(self) -> None:
        self.closed += 1

    def snapshot_state(self) -> Any:
        self.snapshots += 1
        return {"total": self.total, "batches": self.batches}

    def restore_state(self, state: Any) -> None:
        self.total = state["total"] if state else 0
        self.batches = state["batches"] if state else 0

    async def process(self, batch: Batch) -> OperatorOutput:
        self.total += sum(r["v"] for r in batch.rows)
        self.batches += 1
        if batch.end_of_pass or (self.every and self.batches % self.every == 0):
            return Batch([{"total": self.total}], batch.stream, batch.position)
        return None

    async def flush(self) -> OperatorOutput:
        self.flushed += 1
        return None


def rows(n: int) -> list[dict[str, Any]]:
    return [{"v": i} for i in range(n)]


async def test_every_batch_is_a_resume_point_by_default() -> None:
    op, sink, store = Summer(), CollectingSink(), MemoryCheckpointStore()
    await Pipeline(MemorySource(rows(100), 10), [op], sink, name="p",
                   checkpoint_store=store).run()
    assert sink.rows == [{"total": sum(range(100))}]
    assert op.snapshots >= 11  # one per source batch (and the end of the pass)
    assert (op.opened, op.closed) == (1, 1) and op.pipeline == "p"


async def test_interval_skips_snapshots_but_commits_only_snapshotted_positions() -> None:
    op, sink, store = Summer(), CollectingSink(), MemoryCheckpointStore()
    await Pipeline(MemorySource(rows(1000), 10), [op], sink, name="p", checkpoint_store=store,
                   state_interval=StateInterval(batches=25)).run()
    assert sink.rows == [{"total": sum(range(1000))}]
    assert op.snapshots <= 6  # 100 batches: every 25th, and the end of the pass
    positions = [p for _, p in store.commits]
    assert positions and all(p % 250 == 0 for p in positions[:-1]), positions
    checkpoint = await store.load("p")
    assert checkpoint is not None and not checkpoint.pass_open
    assert checkpoint.state == {"op:sum": {"total": sum(range(1000)), "batches": 101}}


class _Gate(Source):
    """Yields ``n`` batches then waits (a CDC source going idle) until stopped."""

    name = "gate"

    def __init__(self, n: int, start: int = 0) -> None:
        self.n, self.start = n, start
        self.idle = asyncio.Event()

    async def read(self, position: Any) -> AsyncIterator[Batch]:
        first = int(position or 0)
        for i in range(first, self.n):
            yield Batch([{"v": i}], position=i + 1)
        self.idle.set()
        await asyncio.sleep(3600)


async def test_a_stop_commits_the_state_of_batches_without_a_snapshot_and_does_not_flush(
) -> None:
    op, sink, store = Summer(), CollectingSink(), MemoryCheckpointStore()
    source = _Gate(30)
    pipeline = Pipeline(source, [op], sink, name="p", checkpoint_store=store,
                        state_interval=StateInterval(batches=1000, on_output=False))
    task = asyncio.create_task(pipeline.run(handle_signals=False))
    await source.idle.wait()
    await asyncio.sleep(0.05)
    pipeline.stop()
    summary = await task
    assert summary.status == "stopped"
    assert op.flushed == 0  # a stateful operator keeps its state on a stop
    checkpoint = await store.load("p")
    assert checkpoint is not None and checkpoint.position == 30
    assert checkpoint.state == {"op:sum": {"total": sum(range(30)), "batches": 30}}
    # the next run goes on from there: the total counts every row once
    op2 = Summer()
    source2 = _Gate(40)
    p2 = Pipeline(source2, [op2], sink, name="p", checkpoint_store=store)
    task = asyncio.create_task(p2.run(handle_signals=False))
    await source2.idle.wait()
    await asyncio.sleep(0.05)
    p2.stop()
    await task
    assert op2.total == sum(range(40))


@pytest.mark.parametrize("interval", [StateInterval(), StateInterval(batches=7),
                                      StateInterval(batches=7, on_output=False),
                                      StateInterval(seconds=0.0)])
async def test_a_crash_then_a_restart_neither_loses_nor_double_counts(
        interval: StateInterval) -> None:
    store = MemoryCheckpointStore()
    fails = {"left": 1}

    def fail_once(batch: Batch) -> None:
        if batch.rows and batch.rows[0]["total"] > 300_000 and fails["left"]:
            fails["left"] -= 1
            raise OSError("disk gone")

    op = Summer(every=3)
    sink = CollectingSink(fail_on=fail_once)
    with pytest.raises(StageError):
        await Pipeline(MemorySource(rows(2000), 17), [op], sink, name="p",
                       checkpoint_store=store, state_interval=interval).run()
    # the same operator object runs again: it restarts from the committed state
    await Pipeline(MemorySource(rows(2000), 17), [op], sink, name="p",
                   checkpoint_store=store, state_interval=interval).run()
    assert op.total == sum(range(2000))
    assert sink.rows[-1] == {"total": sum(range(2000))}
    totals = [r["total"] for r in sink.rows]
    if interval.on_output:  # exactly once: every emitted total once, in order
        assert totals == sorted(set(totals))


async def test_the_end_of_pass_marker_closes_the_pass_at_the_last_position() -> None:
    class Plain(Source):  # finite, no PASSES: the kernel sends the end-of-pass marker
        name = "plain"

        async def read(self, position: Any) -> AsyncIterator[Batch]:
            for i in range(int(position or 0), 50):
                yield Batch([{"v": i}], position=i + 1)

    op, store = Summer(), MemoryCheckpointStore()
    await Pipeline(Plain(), [op], CollectingSink(), name="p", checkpoint_store=store,
                   state_interval=StateInterval(batches=100, on_output=False)).run()
    checkpoint = await store.load("p")
    assert checkpoint is not None
    assert checkpoint.position == 50 and not checkpoint.pass_open
    assert checkpoint.state is not None and checkpoint.state["op:sum"]["batches"] == 51


def test_state_interval_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        StateInterval(batches=0)
    with pytest.raises(ValueError):
        StateInterval(seconds=-1)
