"""Channel: FIFO, bounded in batches and rows, close semantics."""

from __future__ import annotations

import asyncio

import pytest

from etlsync.core.batch import Batch
from etlsync.core.channel import Channel, ChannelClosed


def _b(n: int, tag: int = 0) -> Batch:
    return Batch([{"i": tag}] * n)


async def test_send_waits_while_row_bound_is_reached() -> None:
    ch: Channel[Batch] = Channel(max_batches=10, max_rows=100)
    await ch.send(_b(60))
    blocked = asyncio.create_task(ch.send(_b(60)))
    await asyncio.sleep(0.01)
    assert not blocked.done() and ch.rows == 60
    await ch.receive()
    await asyncio.wait_for(blocked, 1)
    assert ch.rows == 60


async def test_send_waits_while_batch_bound_is_reached() -> None:
    ch: Channel[Batch] = Channel(max_batches=2, max_rows=10**6)
    await ch.send(_b(1))
    await ch.send(_b(1))
    blocked = asyncio.create_task(ch.send(_b(1)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    await ch.receive()
    await asyncio.wait_for(blocked, 1)


async def test_an_oversized_batch_is_admitted_into_an_empty_channel() -> None:
    ch: Channel[Batch] = Channel(max_batches=2, max_rows=10)
    await asyncio.wait_for(ch.send(_b(500)), 1)
    assert ch.rows == 500 and ch.peak_rows == 500


async def test_close_drains_then_raises() -> None:
    ch: Channel[Batch] = Channel()
    await ch.send(_b(1, 1))
    ch.close()
    assert (await ch.receive()).rows[0]["i"] == 1
    with pytest.raises(ChannelClosed):
        await ch.receive()
    with pytest.raises(ChannelClosed):
        await ch.send(_b(1))


async def test_fifo_order() -> None:
    ch: Channel[Batch] = Channel(max_batches=3)

    async def produce() -> None:
        for i in range(50):
            await ch.send(_b(1, i))
        ch.close()

    task = asyncio.create_task(produce())
    got = [b.rows[0]["i"] async for b in ch]
    await task
    assert got == list(range(50))


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Channel(max_batches=0)
