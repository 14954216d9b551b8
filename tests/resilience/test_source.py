"""ResilientSource: reconnect and resume from the last yielded position, no duplicates."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etlsync import Batch, Pipeline, StageError
from etlsync.core.stages import Source
from etlsync.resilience import ResilientSource, RetryPolicy
from etlsync.testing import CollectingSink


class TxLog(Source):
    """A deterministic change log: transactions of several batches; only the last batch of
    a transaction carries a position (the transaction's end). Connections drop at random."""

    name = "txlog"

    def __init__(self, txs: list[list[int]], batch: int, fail_p: float, seed: int) -> None:
        self.txs = txs
        self.batch = batch
        self.fail_p = fail_p
        self.rng = random.Random(seed)
        self.reads: list[Any] = []
        self.failures = 0

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        self.reads.append(position)
        start = 0 if position is None else int(position) + 1
        for t in range(start, len(self.txs)):
            rows = self.txs[t]
            size = self.batch + len(self.reads) % 3  # batching differs between connections
            chunks = [rows[i:i + size] for i in range(0, len(rows), size)] or [[]]
            for k, chunk in enumerate(chunks):
                if self.rng.random() < self.fail_p and self.failures < 200:
                    self.failures += 1
                    raise ConnectionResetError("replication connection lost")
                last = k == len(chunks) - 1
                yield Batch([{"v": v} for v in chunk], stream="t",
                            position=t if last else None)


def fast() -> RetryPolicy:
    return RetryPolicy(max_attempts=None, base_delay=0.0001, max_delay=0.001, max_elapsed=30)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=30), batch=st.integers(1, 9),
       fail_p=st.floats(0, 0.4), seed=st.integers(0, 1000))
async def test_resume_after_lost_connection_delivers_each_row_once(
        sizes: list[int], batch: int, fail_p: float, seed: int) -> None:
    counter = iter(range(10**6))
    txs = [[next(counter) for _ in range(n)] for n in sizes]
    src = TxLog(txs, batch, fail_p, seed)
    out = CollectingSink()
    await Pipeline(ResilientSource(src, retry=fast()), sinks=[out]).run()
    assert [r["v"] for r in out.rows] == [v for tx in txs for v in tx]
    assert len(src.reads) == src.failures + 1


async def test_permanent_source_error_propagates() -> None:
    class Broken(Source):
        async def read(self, position: Any | None) -> AsyncIterator[Batch]:
            raise PermissionError("password authentication failed")
            yield  # pragma: no cover

    with pytest.raises(StageError) as info:
        await Pipeline(ResilientSource(Broken()), sinks=[CollectingSink()]).run()
    assert isinstance(info.value.cause, PermissionError)


async def test_resumes_from_checkpoint_position_first() -> None:
    src = TxLog([[1], [2], [3]], 1, 0.0, 0)
    wrapped = ResilientSource(src, retry=fast())
    got = [b async for b in wrapped.read(0)]
    assert src.reads == [0] and [b.rows for b in got] == [[{"v": 2}], [{"v": 3}]]
