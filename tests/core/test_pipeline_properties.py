"""Hypothesis properties of the runner: exactly-once delivery without failures; the committed
checkpoint never passes data some sink has not made durable (random acknowledgement orders,
injected failures, cancellation at random points); rows in flight stay within the bound."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import Batch, MemoryCheckpointStore, Pipeline, Sink, StageContext
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import StageError
from etlsync.testing import MemorySource

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class RandomDelaySink(Sink):
    """Acknowledges after a random delay, so sinks finish batches in random relative order;
    may fail at one batch. ``durable`` counts rows made durable, in order."""

    def __init__(self, name: str, seed: int, fail_at: int | None = None) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.fail_at = fail_at
        self.durable: list[dict[str, Any]] = []
        self.writes = 0

    async def open(self, context: StageContext) -> None:
        pass

    async def write(self, batch: Batch) -> None:
        self.writes += 1
        for _ in range(self.rng.randint(0, 3)):
            await asyncio.sleep(0)
        if self.fail_at is not None and self.writes == self.fail_at:
            raise OSError("injected failure")
        self.durable.extend(batch.rows)


class CheckingStore(MemoryCheckpointStore):
    """Asserts at every commit that every sink has made the committed rows durable."""

    def __init__(self, sinks: list[RandomDelaySink]) -> None:
        super().__init__()
        self.sinks = sinks

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        for s in self.sinks:
            assert len(s.durable) >= checkpoint.position, (s.name, len(s.durable), checkpoint)
        await super().commit(pipeline, checkpoint)


@SETTINGS
@given(
    n=st.integers(0, 400),
    batch=st.integers(1, 50),
    n_sinks=st.integers(1, 3),
    seed=st.integers(0, 10**6),
    channel_batches=st.integers(1, 4),
    fail=st.one_of(st.none(), st.tuples(st.integers(0, 2), st.integers(1, 10))),
)
def test_checkpoint_never_passes_unacknowledged_data(
    n: int, batch: int, n_sinks: int, seed: int, channel_batches: int,
    fail: tuple[int, int] | None,
) -> None:
    rows = [{"id": i} for i in range(n)]
    sinks = [
        RandomDelaySink(f"s{i}", seed + i,
                        fail_at=fail[1] if fail is not None and fail[0] == i else None)
        for i in range(n_sinks)
    ]
    store = CheckingStore(sinks)
    pipeline = Pipeline(MemorySource(rows, batch), [], sinks, name="p", checkpoint_store=store,
                        channel_batches=channel_batches)
    # every sink gets the batches and then the kernel's end-of-pass marker
    expect_failure = fail is not None and fail[0] < n_sinks and fail[1] <= -(-n // batch) + 1

    async def go() -> None:
        try:
            summary = await pipeline.run(handle_signals=False)
        except StageError as exc:
            assert expect_failure, exc
        else:
            assert not expect_failure
            assert summary.committed_position == n  # the pass end commits also an empty pass
            for s in sinks:
                assert s.durable == rows
        checkpoint = await store.load("p")
        for s in sinks:
            assert checkpoint is None or len(s.durable) >= checkpoint.position
        assert s.durable == rows[: len(s.durable)]
        assert all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task())

    asyncio.run(go())


@SETTINGS
@given(
    n=st.integers(1, 3000),
    batch=st.integers(1, 300),
    channel_rows=st.integers(1, 600),
    channel_batches=st.integers(1, 5),
)
def test_rows_in_flight_never_exceed_the_bound(
    n: int, batch: int, channel_rows: int, channel_batches: int
) -> None:
    sink = RandomDelaySink("slow", 1)
    rows = [{"id": i} for i in range(n)]
    peak = {"in_flight": 0}

    class Watching(MemorySource):
        async def read(self, position: Any):  # type: ignore[no-untyped-def]
            async for b in super().read(position):
                produced = b.position
                peak["in_flight"] = max(peak["in_flight"], produced - len(sink.durable))
                yield b

    pipeline = Pipeline(Watching(rows, batch), [], sink, channel_rows=channel_rows,
                        channel_batches=channel_batches)

    async def go() -> None:
        await pipeline.run(handle_signals=False)
        return None

    # keep references to channels while running to read their peaks
    peaks: dict[str, int] = {}

    async def run_and_watch() -> None:
        task = asyncio.create_task(go())
        while not task.done():
            for name, ch in pipeline.channels.items():
                peaks[name] = max(peaks.get(name, 0), ch.peak_rows)
            await asyncio.sleep(0)
        await task

    asyncio.run(run_and_watch())
    per_channel = max(channel_rows, batch)
    for name, p in peaks.items():
        assert p <= per_channel, (name, p, per_channel)
    # two channels on the path plus one batch held by each of three stages
    assert peak["in_flight"] <= 2 * per_channel + 3 * batch
    assert sink.durable == rows


@SETTINGS
@given(
    n=st.integers(1, 500),
    batch=st.integers(1, 40),
    n_sinks=st.integers(1, 3),
    seed=st.integers(0, 10**6),
    cancel_after=st.integers(0, 200),
)
def test_cancellation_at_a_random_point_leaves_nothing_running(
    n: int, batch: int, n_sinks: int, seed: int, cancel_after: int
) -> None:
    rows = [{"id": i} for i in range(n)]
    sinks = [RandomDelaySink(f"s{i}", seed + i) for i in range(n_sinks)]
    store = CheckingStore(sinks)
    pipeline = Pipeline(MemorySource(rows, batch, follow=True), [], sinks, name="p",
                        checkpoint_store=store)

    async def go() -> None:
        task = asyncio.create_task(pipeline.run(handle_signals=False))
        for _ in range(cancel_after):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        stray = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        assert not stray, stray
        checkpoint = await store.load("p")
        for s in sinks:
            assert checkpoint is None or len(s.durable) >= checkpoint.position
            assert s.durable == rows[: len(s.durable)]

    asyncio.run(go())
