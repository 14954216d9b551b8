"""The CDC source contract, for every change-data-capture source of
``tests/contracts/connectors.py``: a snapshot, then changes made between runs, read by runs
stopped at random batches (in the snapshot or in the stream) and resumed from the committed
checkpoint, deliver every row exactly once."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from etlsync.core.batch import Batch, Row
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.core.pipeline import Pipeline
from etlsync.jobs.build import build_job
from etlsync.testing import CollectingSink
from tests.contracts.conftest import SourceCase
from tests.contracts.harness import numbered, parse, table_of


class StopWhen(CollectingSink):
    """Collects rows; stops the pipeline after ``after`` batches with rows, or once every id
    of ``ids`` arrived (counting ``before``: what earlier runs delivered)."""

    def __init__(self, after: int | None = None, ids: set[int] | None = None,
                 before: list[Row] | None = None) -> None:
        super().__init__()
        self.after, self.ids, self.before = after, ids, before or []
        self.pipeline: Pipeline | None = None
        self.seen = 0

    async def write(self, batch: Batch) -> None:
        await super().write(batch)
        if not len(batch) or self.pipeline is None:
            return
        self.seen += 1
        done = {int(r["id"]) for r in self.before + self.rows}
        if self.seen == self.after or (self.ids is not None and self.ids <= done):
            self.pipeline.stop()


async def _run(case: SourceCase, sink: StopWhen, store: MemoryCheckpointStore) -> Any:
    doc = {"source": {"type": case.factory.type, **case.origin.spec()},
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    pipeline = Pipeline(build_job(parse(doc, case.tmp)).source, [], [sink],
                        name=case.origin.name, checkpoint_store=store)
    sink.pipeline = pipeline
    return await asyncio.wait_for(pipeline.run(handle_signals=False), 120)


async def test_cdc_runs_stopped_at_random_batches_deliver_every_change_once(
        cdc_source: SourceCase) -> None:
    rng = random.Random(cdc_source.factory.id)
    store = MemoryCheckpointStore()
    await cdc_source.origin.add(numbered(40))  # copied by the snapshot
    got: list[Row] = []
    for more in (numbered(20, start=40), numbered(12, start=60)):
        sink = StopWhen(after=rng.randint(1, 3))
        assert (await _run(cdc_source, sink, store)).status == "stopped"
        got += sink.rows
        await cdc_source.origin.add(more)  # changes the stream carries to the next run
    last = StopWhen(ids=set(range(72)), before=got)
    assert (await _run(cdc_source, last, store)).status == "stopped"
    got += last.rows
    assert sorted(int(r["id"]) for r in got) == list(range(72))  # none lost, none twice
    assert table_of(got, ("id", "name", "v")) == table_of(numbered(72), ("id", "name", "v"))
