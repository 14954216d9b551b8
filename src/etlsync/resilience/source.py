"""Source-side resilience: reconnect-and-resume, and a retrying checkpoint store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability, capabilities_of
from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.schema import Schema
from etlsync.core.stages import Source, stage_name
from etlsync.log import get_logger
from etlsync.resilience.classify import Classification, classify
from etlsync.resilience.guard import ResilienceStats, _slice
from etlsync.resilience.ratelimit import TokenBucket
from etlsync.resilience.retry import RetryPolicy


class ResilientSource(Source):
    """Wrap a source so a lost connection reconnects and resumes.

    On a transient error the wrapped source's reader is closed and ``read`` is called
    again from the last resumable position this wrapper yielded (the last batch with a
    non-``None`` position; the checkpoint position at first). Rows yielded after that
    position (mid-transaction batches) are re-delivered by a deterministic source and
    dropped here, so nothing is duplicated. Permanent errors propagate.

    :param retry: backoff between reconnects; attempts count from the last good batch.
    :param rate_limit: a :class:`TokenBucket` in rows/s applied to yielded batches.
    """

    def __init__(self, source: Source, *, retry: RetryPolicy | None = None,
                 rate_limit: TokenBucket | None = None,
                 classifier: Callable[[BaseException], Classification] = classify) -> None:
        self.source = source
        self.name = stage_name(source)
        self.retry = retry if retry is not None else RetryPolicy(
            max_attempts=None, max_elapsed=600.0, classifier=classifier)
        self.rate_limit = rate_limit
        self.stats = ResilienceStats()
        self.resumes = 0
        self.log = get_logger(stage=f"source:{self.name}")

    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]
        """The wrapped source's capabilities."""
        return capabilities_of(self.source)

    def next_pass(self, position: Any) -> Any | None:
        return self.source.next_pass(position)

    @property
    def metrics(self) -> dict[str, Any]:
        """Live counters (``reconnects`` counts resumes)."""
        self.stats.retries = self.retry.stats.retries
        return self.stats.to_dict()

    def extra_metrics(self) -> dict[str, Any]:
        """The kernel's hook: these counters appear in ``StageMetrics.extra``."""
        return self.metrics

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        resume = position
        since = 0  # rows yielded after ``resume``
        skip = 0
        agen: AsyncIterator[Batch] | None = None

        async def close() -> None:
            nonlocal agen
            g, agen = agen, None
            if g is not None:
                with contextlib.suppress(Exception):
                    await g.aclose()  # type: ignore[attr-defined]

        async def pull() -> Batch | None:
            nonlocal agen, skip
            if agen is None:
                agen = self.source.read(resume)
                skip = since
            try:
                return await agen.__anext__()
            except StopAsyncIteration:
                return None
            except Exception:
                await close()
                raise

        async def on_retry(attempt: int, exc: BaseException, verdict: Classification,
                           delay: float) -> None:
            self.resumes += 1
            self.stats.reconnects += 1
            self.log.warning("source failed: resuming", attempt=attempt,
                             delay=round(delay, 3), resume_from=resume, skip_rows=since,
                             error_type=type(exc).__name__, error=str(exc)[:300])

        try:
            while True:
                batch = await self.retry.call(pull, on_retry=on_retry)
                if batch is None:
                    return
                if skip:
                    # rows this wrapper already yielded before the reader was restarted
                    n = len(batch)
                    drop = min(skip, n)
                    skip -= drop
                    if drop == n and batch.position is None:
                        continue
                    batch = _slice(batch, drop, n)
                if self.rate_limit is not None and len(batch):
                    self.stats.rate_limited_seconds += await self.rate_limit.acquire(
                        len(batch))
                self.stats.batches += 1
                self.stats.rows += len(batch)
                yield batch
                if batch.position is not None:
                    resume, since = batch.position, skip
                else:
                    since += len(batch)
        finally:
            await close()

    async def on_commit(self, position: Any) -> None:
        await self.retry.call(lambda: self.source.on_commit(position))

    async def discover(self) -> dict[str, Schema]:
        return await self.retry.call(self.source.discover)


class ResilientCheckpointStore(CheckpointStore):
    """Wrap a :class:`~etlsync.core.checkpoint.CheckpointStore` so its calls retry transient
    errors (a store whose connection dropped reconnects on its next call)."""

    def __init__(self, store: CheckpointStore, *, retry: RetryPolicy | None = None) -> None:
        self.store = store
        self.location = store.location
        self.retry = retry if retry is not None else RetryPolicy(max_attempts=None)

    async def load(self, pipeline: str) -> Checkpoint | None:
        result: Checkpoint | None = await self.retry.call(lambda: self.store.load(pipeline))
        return result

    async def peek(self, pipeline: str) -> Checkpoint | None:
        result: Checkpoint | None = await self.retry.call(lambda: self.store.peek(pipeline))
        return result

    async def commit(self, pipeline: str, checkpoint: Checkpoint) -> None:
        await self.retry.call(lambda: self.store.commit(pipeline, checkpoint))

    async def reset(self, pipeline: str) -> None:
        await self.retry.call(lambda: self.store.reset(pipeline))

    async def close(self) -> None:
        await self.store.close()
