"""Pipeline runner: delivery, ordering, fan-out, errors, stop and summaries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from etlsync import Batch, Filter, Map, MemoryCheckpointStore, Op, Operator, Pipeline, Source
from etlsync.core.capabilities import Capability
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import StageError
from etlsync.core.stages import OperatorOutput
from etlsync.testing import CollectingSink, MemorySource


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "v": i * 2} for i in range(n)]


async def committed(store: MemoryCheckpointStore, name: str = "p") -> Any:
    checkpoint = await store.load(name)
    return None if checkpoint is None else checkpoint.position


async def test_every_row_reaches_every_sink_once_in_order() -> None:
    a, b = CollectingSink("a"), CollectingSink("b", delay=0.0005)
    summary = await Pipeline(MemorySource(rows(5000), 128), [], [a, b]).run()
    assert a.rows == rows(5000) and b.rows == rows(5000)
    assert summary.status == "completed"
    assert summary.rows_read == 5000 and summary.rows_written == 5000
    assert summary.committed_position == 5000
    assert a.opened and a.closed and b.closed


async def test_operators_transform_and_filter_in_order() -> None:
    sink = CollectingSink()
    ops = [Map(lambda r: {**r, "v": r["v"] + 1}), Filter(lambda r: r["id"] % 3 == 0)]
    summary = await Pipeline(MemorySource(rows(1000), 100), ops, sink).run()
    assert sink.rows == [{"id": i, "v": i * 2 + 1} for i in range(0, 1000, 3)]
    assert summary.stages["op:filter"].rows_in == 1000
    assert summary.stages["op:filter"].rows_out == len(sink.rows)


async def test_resume_skips_committed_rows() -> None:
    store = MemoryCheckpointStore()
    await store.commit("p", Checkpoint(600))
    sink = CollectingSink()
    await Pipeline(MemorySource(rows(1000), 100), [], sink, name="p", checkpoint_store=store).run()
    assert [r["id"] for r in sink.rows] == list(range(600, 1000))


async def test_sink_error_names_the_stage_and_keeps_only_safe_checkpoint() -> None:
    def fail_at_500(batch: Batch) -> None:
        if batch.rows[0]["id"] == 500:
            raise ValueError("disk full")

    store = MemoryCheckpointStore()
    sink = CollectingSink("warehouse", fail_on=fail_at_500)
    with pytest.raises(StageError) as info:
        await Pipeline(MemorySource(rows(1000), 100), [], sink, name="p",
                       checkpoint_store=store).run()
    assert info.value.stage == "sink:warehouse"
    assert "disk full" in str(info.value) and isinstance(info.value.cause, ValueError)
    assert await committed(store) == 500
    assert sink.closed
    assert _no_stray_tasks()


async def test_operator_error_is_reported_with_its_name() -> None:
    def boom(r: dict[str, Any]) -> dict[str, Any]:
        if r["id"] == 42:
            raise KeyError("price")
        return r

    with pytest.raises(StageError) as info:
        await Pipeline(MemorySource(rows(100), 10), [Map(boom, name="enrich")],
                       CollectingSink()).run()
    assert info.value.stage == "op:enrich"
    assert _no_stray_tasks()


async def test_source_error_is_reported() -> None:
    class Broken(Source):
        name = "api"

        async def read(self, position: Any) -> AsyncIterator[Batch]:
            yield Batch([{"x": 1}], position=1)
            raise ConnectionError("reset by peer")

    store = MemoryCheckpointStore()
    sink = CollectingSink()
    with pytest.raises(StageError) as info:
        await Pipeline(Broken(), [], sink, name="p", checkpoint_store=store).run()
    assert info.value.stage == "source:api"
    assert sink.rows == [{"x": 1}]


async def test_stop_drains_commits_and_returns() -> None:
    source = MemorySource(rows(300), 100, follow=True)
    sink = CollectingSink(delay=0.01)
    store = MemoryCheckpointStore()
    pipeline = Pipeline(source, [], sink, name="p", checkpoint_store=store)
    task = asyncio.create_task(pipeline.run(handle_signals=False))
    while len(sink.rows) < 300:
        await asyncio.sleep(0.005)
    pipeline.stop()
    summary = await asyncio.wait_for(task, 5)
    assert summary.status == "stopped"
    assert await committed(store) == 300
    assert source.committed[-1] == 300
    assert _no_stray_tasks()


async def test_stop_while_batches_are_in_flight_writes_them() -> None:
    sink = CollectingSink(delay=0.02)
    pipeline = Pipeline(MemorySource(rows(10_000), 50), [], sink, channel_batches=2)
    task = asyncio.create_task(pipeline.run(handle_signals=False))
    await asyncio.sleep(0.05)
    pipeline.stop()
    summary = await asyncio.wait_for(task, 5)
    assert summary.status == "stopped"
    written = len(sink.rows)
    assert 0 < written < 10_000
    assert summary.committed_position == written
    assert sink.rows == rows(10_000)[:written]


async def test_metrics_are_readable_while_running() -> None:
    sink = CollectingSink(delay=0.005)
    pipeline = Pipeline(MemorySource(rows(2000), 100), [Map(lambda r: r)], sink)
    task = asyncio.create_task(pipeline.run(handle_signals=False))
    seen = []
    while not task.done():
        m = pipeline.metrics
        seen.append((m["sink:collect"].rows_in, m["sink:collect"].channel_batches))
        await asyncio.sleep(0.01)
    await task
    progress = [s[0] for s in seen]
    assert progress == sorted(progress) and max(progress) > 0
    assert any(0 < p < 2000 for p in progress)


class Split(Operator):
    """Emits each batch as single-row batches (more batches than it gets)."""

    name = "split"

    async def process(self, batch: Batch) -> OperatorOutput:
        return [batch.with_rows([r]) for r in batch.rows]


class DropOdd(Operator):
    """Drops whole batches (fewer batches)."""

    name = "drop"

    async def process(self, batch: Batch) -> OperatorOutput:
        return None if batch.rows[0]["id"] % 2 else batch


class Window(Operator):
    """Buffers batches and emits them in groups of ``size`` (a stateful operator)."""

    name = "window"

    def __init__(self, size: int) -> None:
        self.size = size
        self.held: list[Batch] = []

    async def process(self, batch: Batch) -> OperatorOutput:
        batch.retain()
        self.held.append(batch)
        if len(self.held) < self.size:
            return None
        return self._emit()

    async def flush(self) -> OperatorOutput:
        return self._emit() if self.held else None

    def _emit(self) -> Batch:
        out = Batch.concat(self.held)
        for b in self.held:
            b.release()
        self.held = []
        return out


async def test_operators_that_split_drop_and_buffer_keep_checkpoints_safe() -> None:
    store = MemoryCheckpointStore()
    sink = CollectingSink()
    src = [{"id": i} for i in range(100)]
    summary = await Pipeline(MemorySource(src, 1), [Split(), DropOdd(), Window(7)], sink,
                             name="p", checkpoint_store=store).run()
    assert [r["id"] for r in sink.rows] == list(range(0, 100, 2))
    assert summary.committed_position == 100
    committed = [pos for _, pos in store.commits]
    assert committed == sorted(committed)
    # every commit covers only rows already written when the window emitted
    for pos in committed:
        assert pos <= 100


async def test_window_holds_checkpoint_until_emitted() -> None:
    store = MemoryCheckpointStore()
    commits_seen: list[tuple[int, int]] = []
    sink = CollectingSink()

    class Observing(MemoryCheckpointStore):
        async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
            commits_seen.append((checkpoint.position, len(sink.rows)))
            await store.commit(pipeline, checkpoint)

    await Pipeline(MemorySource([{"id": i} for i in range(20)], 1), [Window(5)], sink,
                   checkpoint_store=Observing()).run()
    for position, written in commits_seen:
        assert position <= written


async def test_change_ops_survive_a_map_and_a_filter() -> None:
    class Changes(Source):
        async def read(self, position: Any) -> AsyncIterator[Batch]:
            yield Batch([{"id": 1, "n": 1}, {"id": 2, "n": 0}, {"id": 3, "n": 0}],
                        ops=[Op.INSERT, Op.DELETE, Op.UPDATE], position="lsn/1")

    sink = CollectingSink()
    await Pipeline(Changes(), [Map(lambda r: {**r, "n": r["n"] * 10}), Filter(lambda r: r["n"] > 0)],
                   sink).run()
    (batch,) = sink.batches
    assert batch.ops == [Op.INSERT, Op.DELETE]
    assert [r["id"] for r in batch.rows] == [1, 2]


async def test_a_pipeline_needs_a_sink() -> None:
    with pytest.raises(ValueError, match="at least one sink"):
        Pipeline(MemorySource([]), [], [])


async def test_duplicate_stage_names_are_made_unique() -> None:
    summary = await Pipeline(MemorySource(rows(10)), [Map(lambda r: r), Map(lambda r: r)],
                             [CollectingSink(), CollectingSink()]).run()
    assert {"op:map", "op:map#2", "sink:collect", "sink:collect#2"} <= set(summary.stages)


def _no_stray_tasks() -> bool:
    current = asyncio.current_task()
    return all(t is current or t.done() for t in asyncio.all_tasks())


async def test_sinks_see_the_end_of_a_pass_only_when_the_source_ended_by_itself() -> None:
    done = CollectingSink()
    await Pipeline(MemorySource(rows(10)), [], done).run()
    assert done.ends_of_pass == 1

    stopped = CollectingSink(delay=0.01)
    pipeline = Pipeline(MemorySource(rows(100), 10, follow=True), [], stopped)
    task = asyncio.create_task(pipeline.run(handle_signals=False))
    while len(stopped.rows) < 100:
        await asyncio.sleep(0.005)
    pipeline.stop()
    await task
    assert stopped.ends_of_pass == 0

    failed = CollectingSink(fail_on=lambda b: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(StageError):
        await Pipeline(MemorySource(rows(10)), [], failed).run()
    assert failed.ends_of_pass == 0


async def test_the_pass_signal_survives_an_operator_that_drops_everything() -> None:
    sink = CollectingSink()
    store = MemoryCheckpointStore()
    await Pipeline(MemorySource(rows(10), 5), [Filter(lambda r: False)], sink, name="p",
                   checkpoint_store=store).run()
    assert sink.rows == [] and sink.ends_of_pass == 1
    checkpoint = await store.load("p")
    assert checkpoint is not None and checkpoint.position == 10 and not checkpoint.pass_open


class _TransactionalSink(CollectingSink):
    """Stores the checkpoint it is handed with its rows (an in-memory 'transaction')."""

    capabilities = frozenset({Capability.TRANSACTIONAL})

    def __init__(self, name: str = "owner") -> None:
        super().__init__(name)
        self.store = MemoryCheckpointStore()
        self.rows_at_checkpoint: list[tuple[int, int]] = []

    def checkpoint_store(self) -> MemoryCheckpointStore:
        return self.store

    async def write(self, batch: Batch) -> None:
        await super().write(batch)
        checkpoint = self.context.checkpoint_for(batch)
        if checkpoint is not None:
            self.rows_at_checkpoint.append((checkpoint.position, len(self.rows)))
            await self.store.commit(self.context.pipeline, checkpoint)


async def test_the_owning_sink_writes_last_so_its_checkpoint_matches_its_rows() -> None:
    owner = _TransactionalSink()
    other = CollectingSink("other", delay=0.002)
    summary = await Pipeline(MemorySource(rows(200), 10), [], [other, owner], name="p").run()
    assert summary.status == "completed" and owner.rows == rows(200) == other.rows
    # every checkpoint the owner stored says exactly how many rows it holds: exactly-once
    assert owner.rows_at_checkpoint and all(p == n for p, n in owner.rows_at_checkpoint)
    stored = await owner.store.load("p")
    assert stored == Checkpoint(200, pass_open=False)


async def test_a_crash_of_another_sink_never_leaves_the_owner_ahead_of_its_checkpoint() -> None:
    def crash_at_100(batch: Batch) -> None:
        if batch.rows and batch.rows[0]["id"] == 100:
            raise OSError("disk full")

    owner = _TransactionalSink()
    with pytest.raises(StageError):
        await Pipeline(MemorySource(rows(200), 10), [],
                       [CollectingSink("other", fail_on=crash_at_100), owner], name="p").run()
    stored = await owner.store.load("p")
    assert len(owner.rows) <= 100
    assert (stored.position if stored else 0) == len(owner.rows)
