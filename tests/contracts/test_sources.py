"""The source contract, for every source type of ``tests/contracts/connectors.py``: a run
stopped (or failed) at a random batch and then resumed delivers every row exactly once; a
complete pass is followed by a new pass where ``next_pass`` says (a full refresh starts over,
an incremental pass continues after its watermark, ties included)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from etlsync.core.batch import Batch, Row
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.core.errors import StageError
from etlsync.core.pipeline import Pipeline
from etlsync.jobs.build import build_job
from etlsync.testing import CollectingSink
from tests.contracts.conftest import SourceCase
from tests.contracts.harness import choices, numbered, parse, table_of

COLS = ("id", "name", "v")
BATCH = 7


class StopAfter(CollectingSink):
    """Collects rows; after ``n`` batches with rows it stops the pipeline (``stop``) or
    fails without keeping the batch (``fail``)."""

    def __init__(self, n: int | None, how: str = "stop") -> None:
        super().__init__()
        self.n, self.how = n, how
        self.pipeline: Pipeline | None = None
        self.seen = 0

    async def write(self, batch: Batch) -> None:
        if len(batch) and self.n is not None:
            self.seen += 1
            if self.seen > self.n and self.how == "fail":
                raise RuntimeError("the sink failed")
            if self.seen == self.n and self.how == "stop" and self.pipeline is not None:
                self.pipeline.stop()
        await super().write(batch)


def _source(case: SourceCase, **sync: Any) -> Any:
    doc = {"source": {"type": case.factory.type, **case.origin.spec()},
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}, "batch_size": BATCH}
    if case.factory.text_only and "cursor_field" in sync:
        doc["source"]["cursor_type"] = "integer"
    if sync:
        doc["sync"] = sync
    return build_job(parse(doc, case.tmp)).source


async def _run(case: SourceCase, sink: StopAfter, store: MemoryCheckpointStore, name: str,
               **sync: Any) -> Any:
    pipeline = Pipeline(_source(case, **sync), [], [sink], name=name, checkpoint_store=store)
    sink.pipeline = pipeline
    return await pipeline.run(handle_signals=False)


def _ids(rows: list[Row]) -> list[int]:
    return sorted(int(r["id"]) for r in rows)


@pytest.mark.parametrize("how", ["stop", "fail"])
async def test_a_run_ended_at_a_random_batch_resumes_with_every_row_once(
        source: SourceCase, how: str) -> None:
    rows = numbered(18 * BATCH)
    await source.origin.add(rows)
    rng = random.Random(f"{source.factory.id}-{how}")
    store = MemoryCheckpointStore()
    got: list[Row] = []
    for _ in range(2):  # two runs ended at random batches (a stop drains up to ~4 more)
        sink = StopAfter(rng.randint(1, 4), how)
        if how == "fail":
            with pytest.raises(StageError, match="the sink failed"):
                await _run(source, sink, store, source.origin.name)
        else:
            assert (await _run(source, sink, store, source.origin.name)).status == "stopped"
        got += sink.rows
    last = StopAfter(None)
    assert (await _run(source, last, store, source.origin.name)).status == "completed"
    got += last.rows
    assert _ids(got) == [r["id"] for r in rows]  # none lost, none twice
    assert table_of(got, COLS) == table_of(rows, COLS)


async def test_a_complete_pass_is_followed_by_a_new_full_pass(source: SourceCase) -> None:
    rows = numbered(20)
    await source.origin.add(rows)
    store = MemoryCheckpointStore()
    first, second = StopAfter(None), StopAfter(None)
    await _run(source, first, store, source.origin.name)
    checkpoint = await store.load(source.origin.name)
    assert checkpoint is not None and not checkpoint.pass_open
    assert first.ends_of_pass == 1
    await _run(source, second, store, source.origin.name)
    assert table_of(first.rows, COLS) == table_of(second.rows, COLS) == table_of(rows, COLS)


async def test_an_incremental_pass_continues_after_its_watermark(source: SourceCase) -> None:
    if "incremental" not in choices("source", source.factory.type, "sync_mode"):
        pytest.skip(f"{source.factory.type} has no incremental sync")
    sync = {"sync_mode": "incremental", "cursor_field": "v", "primary_key": ["id"]}
    rows = numbered(20)
    await source.origin.add(rows)
    store = MemoryCheckpointStore()
    first = StopAfter(None)
    await _run(source, first, store, source.origin.name, **sync)
    assert _ids(first.rows) == list(range(20))
    # a tie at the watermark (v = 190, a new key) and rows above it
    later = [{"id": 100, "name": "tie", "v": 190}, *numbered(3, start=20)]
    await source.origin.add(later)
    second = StopAfter(None)
    await _run(source, second, store, source.origin.name, **sync)
    assert _ids(second.rows) == [20, 21, 22, 100]
    third = StopAfter(None)
    await _run(source, third, store, source.origin.name, **sync)
    assert third.rows == []
