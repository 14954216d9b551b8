"""Bounded channels between stages, counting both batches and rows."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from etlsync.core.batch import Batch

T = TypeVar("T", bound=Batch)


class ChannelClosed(Exception):
    """Raised by :meth:`Channel.receive` when the channel is closed and empty."""


class Channel(Generic[T]):
    """A FIFO of batches bounded by ``max_batches`` and ``max_rows``.

    ``send`` waits while either bound is reached, so a slow consumer slows the producer.
    An empty channel always admits one batch, however many rows it holds, so a batch
    larger than ``max_rows`` cannot deadlock the pipeline; rows in flight therefore never
    exceed ``max(max_rows, largest batch)``.
    """

    def __init__(self, max_batches: int = 2, max_rows: int = 10_000) -> None:
        if max_batches < 1 or max_rows < 1:
            raise ValueError("a channel needs max_batches >= 1 and max_rows >= 1")
        self.max_batches = max_batches
        self.max_rows = max_rows
        self._items: deque[T] = deque()
        self._rows = 0
        self._closed = False
        self._not_full = asyncio.Event()
        self._not_full.set()
        self._not_empty = asyncio.Event()
        self.peak_rows = 0
        self.peak_batches = 0

    @property
    def rows(self) -> int:
        """Rows held now."""
        return self._rows

    def __len__(self) -> int:
        return len(self._items)

    def _full(self) -> bool:
        return bool(self._items) and (
            len(self._items) >= self.max_batches or self._rows >= self.max_rows
        )

    def _would_overflow(self, n: int) -> bool:
        return bool(self._items) and (
            len(self._items) >= self.max_batches or self._rows + n > self.max_rows
        )

    async def send(self, batch: T) -> None:
        """Put a batch in, waiting while the channel is full."""
        n = len(batch)
        while self._would_overflow(n):
            if self._closed:
                raise ChannelClosed("send on a closed channel")
            self._not_full.clear()
            await self._not_full.wait()
        if self._closed:
            raise ChannelClosed("send on a closed channel")
        self._items.append(batch)
        self._rows += n
        if self._rows > self.peak_rows:
            self.peak_rows = self._rows
        if len(self._items) > self.peak_batches:
            self.peak_batches = len(self._items)
        self._not_empty.set()

    async def receive(self) -> T:
        """Take the oldest batch, waiting while empty; raise :class:`ChannelClosed` at the end."""
        while not self._items:
            if self._closed:
                raise ChannelClosed("channel closed")
            self._not_empty.clear()
            await self._not_empty.wait()
        batch = self._items.popleft()
        self._rows -= len(batch)
        self._not_full.set()
        return batch

    def close(self) -> None:
        """No more sends; receivers drain what is left, then get :class:`ChannelClosed`."""
        self._closed = True
        self._not_empty.set()
        self._not_full.set()

    def __aiter__(self) -> Channel[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except ChannelClosed:
            raise StopAsyncIteration from None
