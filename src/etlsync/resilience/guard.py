"""Stage wrappers: retry, circuit breaker, rate limit, bad-row isolation, reconnect-and-resume.

- :class:`Resilient` wraps a :class:`~etlsync.core.stages.Sink`.
- :class:`ResilientOperator` wraps an :class:`~etlsync.core.stages.Operator`.
- :class:`~etlsync.resilience.source.ResilientSource` wraps a
  :class:`~etlsync.core.stages.Source`.

A batch whose write fails with *bad data* is bisected: halves are written in order, a half
that fails is split again, and single rows that still fail are the bad rows. Good rows are
written once, in source order; bad rows go to the dead-letter sink (or are skipped, or fail
the pipeline) according to ``on_bad_data``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability, capabilities_of
from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.schema import Schema
from etlsync.core.stages import Operator, OperatorOutput, Sink, StageContext, stage_name
from etlsync.log import get_logger
from etlsync.resilience.breaker import CircuitBreaker
from etlsync.resilience.classify import (
    Classification,
    ErrorKind,
    PermanentError,
    classify,
)
from etlsync.resilience.deadletter import DeadLetter, DeadLetterSink
from etlsync.resilience.ratelimit import TokenBucket
from etlsync.resilience.retry import RetryPolicy

BadDataPolicy = Literal["fail", "skip", "dead_letter"]


class TooManyBadRows(PermanentError):
    """The share of bad rows passed ``max_bad_ratio``: the pipeline stops."""

    def __init__(self, stage: str, bad: int, rows: int, ratio: float) -> None:
        self.stage, self.bad, self.rows, self.ratio = stage, bad, rows, ratio
        super().__init__(f"stage {stage!r}: {bad} of {rows} rows were bad "
                         f"({bad / max(rows, 1):.1%}), more than max_bad_ratio={ratio:.1%}")


@dataclass(slots=True)
class ResilienceStats:
    """Counters of one wrapper, readable while the pipeline runs."""

    batches: int = 0
    rows: int = 0
    bad_rows: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    bisect_writes: int = 0
    reconnects: int = 0
    retries: int = 0
    rate_limited_seconds: float = 0.0
    verified_commits: int = 0
    breaker_state: str = "closed"
    breaker_opened: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _PieceContext(StageContext):
    """The context the wrapped sink sees: it hands out the checkpoint only for the piece
    that completes the batch, so a transactional sink never stores a checkpoint past rows
    it has not written. Everything else is the pipeline's context."""

    def __init__(self, inner: StageContext) -> None:
        super().__init__(inner.pipeline, inner.stage, inner.log, resume=inner.resume,
                         owns_checkpoint=inner.owns_checkpoint)
        self.inner = inner
        self.allow = True
        self.handed: Checkpoint | None = None

    def checkpoint_for(self, batch: Batch) -> Checkpoint | None:
        if not self.allow:
            return None
        self.handed = self.inner.checkpoint_for(batch)
        return self.handed


def _slice(batch: Batch, lo: int, hi: int) -> Batch:
    """Rows ``lo..hi`` of ``batch``; only the piece that ends the batch ends its pass."""
    if lo == 0 and hi == len(batch):
        return batch
    ops = None if batch.ops is None else batch.ops[lo:hi]
    before = None if batch.before is None else batch.before[lo:hi]
    piece = batch.with_rows(batch.rows[lo:hi], ops=ops, before=before)
    piece.end_of_pass = batch.end_of_pass and hi == len(batch)
    return piece


class _Isolator:
    """Shared bad-row logic of the sink and operator wrappers."""

    retry: RetryPolicy
    stats: ResilienceStats
    on_bad_data: BadDataPolicy
    dead_letter: DeadLetterSink | None
    max_bad_ratio: float | None
    min_rows_for_ratio: int
    classifier: Callable[[BaseException], Classification]
    log: Any

    def _setup_isolation(self, on_bad_data: BadDataPolicy, dead_letter: DeadLetterSink | None,
                         max_bad_ratio: float | None, min_rows_for_ratio: int) -> None:
        if on_bad_data not in ("fail", "skip", "dead_letter"):
            raise ValueError(f"on_bad_data must be fail, skip or dead_letter, not {on_bad_data!r}")
        if on_bad_data == "dead_letter" and dead_letter is None:
            raise ValueError("on_bad_data='dead_letter' needs a dead_letter sink")
        if max_bad_ratio is not None and not 0 <= max_bad_ratio <= 1:
            raise ValueError("max_bad_ratio must be between 0 and 1")
        self.on_bad_data = on_bad_data
        self.dead_letter = dead_letter
        self.max_bad_ratio = max_bad_ratio
        self.min_rows_for_ratio = min_rows_for_ratio
        self._pending: list[DeadLetter] = []

    def _is_bad_data(self, exc: BaseException) -> bool:
        return self.classifier(exc).kind is ErrorKind.BAD_DATA

    def _letter(self, batch: Batch, i: int, exc: BaseException, pipeline: str,
                stage: str) -> DeadLetter:
        verdict = self.classifier(exc)
        return DeadLetter(
            row=batch.rows[i], stage=stage, error_type=type(exc).__name__,
            error=str(exc)[:2000], pipeline=pipeline, stream=batch.stream,
            kind=verdict.kind.value, reason=verdict.reason, op=batch.op_at(i).value,
            before=None if batch.before is None else batch.before[i],
            position=batch.position)

    def _record_bad(self, batch: Batch, i: int, exc: BaseException, pipeline: str,
                    stage: str) -> None:
        self.stats.bad_rows += 1
        if self.on_bad_data == "skip":
            self.stats.skipped += 1
            self.log.warning("bad row skipped", row_index=i, error_type=type(exc).__name__,
                             error=str(exc)[:300])
        else:
            self._pending.append(self._letter(batch, i, exc, pipeline, stage))

    async def _flush_dead_letters(self) -> None:
        if not self._pending or self.dead_letter is None:
            self._pending.clear()
            return
        letters, dlq = list(self._pending), self.dead_letter

        async def put() -> None:
            await dlq.write(letters)

        async def reopen(_: int, exc: BaseException, verdict: Classification,
                         __: float) -> None:
            if verdict.reconnect:
                with contextlib.suppress(Exception):
                    await dlq.close()
                with contextlib.suppress(Exception):
                    await dlq.open()

        await self.retry.call(put, on_retry=reopen)
        self._pending.clear()
        self.stats.dead_lettered += len(letters)
        self.log.warning("rows dead-lettered", rows=len(letters), sink=dlq.name,
                         error_type=letters[0].error_type, error=letters[0].error[:300])

    def _check_ratio(self, stage: str) -> None:
        s = self.stats
        if (self.max_bad_ratio is not None and s.rows >= self.min_rows_for_ratio
                and s.bad_rows > self.max_bad_ratio * s.rows):
            raise TooManyBadRows(stage, s.bad_rows, s.rows, self.max_bad_ratio)


class Resilient(Sink, _Isolator):
    """Wrap ``sink`` with retry, a circuit breaker, a rate limit and bad-row isolation.

    :param retry: policy for transient errors (default :class:`RetryPolicy` ()).
    :param breaker: a :class:`CircuitBreaker`; its state is in :attr:`stats` and logs.
    :param rate_limit: a :class:`TokenBucket` in rows/s (``rate_unit="rows"``) or
        writes/s (``"requests"``).
    :param on_bad_data: ``"fail"`` (raise), ``"skip"`` (log and drop the bad rows) or
        ``"dead_letter"`` (store them in ``dead_letter``).
    :param max_bad_ratio: stop the pipeline (:class:`TooManyBadRows`) once more than this
        share of rows was bad, counted after ``min_rows_for_ratio`` rows.
    :param reconnect: after an error classified ``reconnect``, reconnect before retrying:
        with the sink's own ``async reconnect()`` if it has one, else by ``close()`` and
        ``open()``. A sink whose ``close`` finalises something (an overwrite swapping its
        staging table in) must offer ``reconnect()`` or be wrapped with ``reconnect=False``.
    :param verify_with: the store that reads the checkpoint a transactional sink writes in
        its batch transaction (default: the sink's own :meth:`~Sink.checkpoint_store`).
        When a write that stored a checkpoint fails ambiguously (the connection dropped
        around COMMIT), the retry first loads it: if it is there, the transaction committed
        and the batch is not written twice.

    Contract: ``write`` returns once the good rows are durable in the sink and the bad
    ones in the dead-letter sink. Bisection assumes the wrapped sink's ``write`` is
    all-or-nothing (a transaction, or validation before writing); otherwise a failed
    write may leave part of a piece behind and its retry duplicates it. A transactional
    sink sees a committable position only for the piece that ends the batch.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rate_limit: TokenBucket | None = None,
        rate_unit: Literal["rows", "requests"] = "rows",
        on_bad_data: BadDataPolicy = "fail",
        dead_letter: DeadLetterSink | None = None,
        max_bad_ratio: float | None = None,
        min_rows_for_ratio: int = 0,
        reconnect: bool = True,
        verify_with: CheckpointStore | None = None,
        classifier: Callable[[BaseException], Classification] = classify,
    ) -> None:
        self.sink = sink
        self.verify_with = verify_with
        self.name = stage_name(sink)
        self.retry = retry if retry is not None else RetryPolicy(classifier=classifier)
        self.breaker = breaker
        self.rate_limit = rate_limit
        self.rate_unit = rate_unit
        self.reconnect = reconnect
        self.classifier = classifier
        self.stats = ResilienceStats()
        self.log = get_logger(stage=self.name)
        self._setup_isolation(on_bad_data, dead_letter, max_bad_ratio, min_rows_for_ratio)
        self._ctx: _PieceContext | None = None
        self._needs_open = False
        self._unsure: Checkpoint | None = None

    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]
        """The wrapped sink's capabilities."""
        return capabilities_of(self.sink)

    def checkpoint_store(self) -> CheckpointStore | None:
        return self.sink.checkpoint_store()

    @property
    def metrics(self) -> dict[str, Any]:
        """Live counters: wrapper stats, retry stats and breaker state."""
        s = self.stats
        s.retries = self.retry.stats.retries
        if self.breaker is not None:
            s.breaker_state = self.breaker.state.value
            s.breaker_opened = self.breaker.stats.opened
        return s.to_dict()

    def extra_metrics(self) -> dict[str, Any]:
        """The kernel's hook: these counters appear in ``StageMetrics.extra``."""
        return self.metrics

    def __getattr__(self, name: str) -> Any:
        # attributes the wrapper lacks (``table``, ``config``, ...) are the wrapped sink's
        if name.startswith("_") or name == "sink":
            raise AttributeError(name)
        return getattr(self.sink, name)

    async def open(self, context: StageContext) -> None:
        self._ctx = _PieceContext(context)
        self.log = context.log
        ctx = self._ctx
        if self.dead_letter is not None:
            await self.retry.call(self.dead_letter.open)
        await self.retry.call(lambda: self.sink.open(ctx), on_retry=self._on_retry_open)

    async def describe(self) -> Schema | None:
        return await self.sink.describe()

    async def close(self) -> None:
        try:
            await self.sink.close()
        finally:
            if self.dead_letter is not None:
                await self.dead_letter.close()

    async def _on_retry_open(self, attempt: int, exc: BaseException,
                             verdict: Classification, delay: float) -> None:
        self.log.warning("open failed: retrying", attempt=attempt, delay=round(delay, 3),
                         error_type=type(exc).__name__, error=str(exc)[:300])
        with contextlib.suppress(Exception):
            await self.sink.close()

    async def _on_retry(self, attempt: int, exc: BaseException, verdict: Classification,
                        delay: float) -> None:
        log = self.log.warning if attempt >= 3 else self.log.info
        log("retrying", attempt=attempt, delay=round(delay, 3),
            error_type=type(exc).__name__, error=str(exc)[:300], reason=verdict.reason,
            breaker=None if self.breaker is None else self.breaker.state.value)
        if verdict.reconnect and self.reconnect and not self._needs_open:
            self._needs_open = True
            self.stats.reconnects += 1
            if not callable(getattr(self.sink, "reconnect", None)):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.sink.close(), 30)

    async def _attempt(self, piece: Batch) -> None:
        ctx = self._ctx
        if self._needs_open:
            assert ctx is not None
            hook = getattr(self.sink, "reconnect", None)
            if callable(hook):
                await hook()
                self._needs_open = False
        if self._needs_open:
            assert ctx is not None
            try:
                await self.sink.open(ctx)
            except BaseException:
                with contextlib.suppress(Exception):  # release what a half-open left
                    await asyncio.wait_for(self.sink.close(), 30)
                raise
            self._needs_open = False
        if self._unsure is not None and ctx is not None and await self._committed(ctx):
            self._unsure = None
            self.stats.verified_commits += 1
            self.log.warning("write had committed before the connection dropped: "
                             "not writing it again")
            return
        if ctx is not None:
            ctx.handed = None
        try:
            await self.sink.write(piece)
        except BaseException:
            if ctx is not None and ctx.handed is not None:
                self._unsure = ctx.handed
            raise
        self._unsure = None

    async def _committed(self, ctx: _PieceContext) -> bool:
        """Whether the checkpoint of the write that failed ambiguously is stored."""
        assert self._unsure is not None
        store = self.verify_with or self.sink.checkpoint_store()
        if store is None:
            return False
        try:
            stored = await store.load(ctx.pipeline)
        finally:
            if store is not self.verify_with:
                await store.close()
        return stored is not None and stored.encode() == self._unsure.encode()

    async def _write_piece(self, piece: Batch, final: bool) -> None:
        if self._ctx is not None:
            self._ctx.allow = final
        if self.rate_limit is not None and self.rate_unit == "requests":
            self.stats.rate_limited_seconds += await self.rate_limit.acquire(1)
        breaker = self.breaker

        async def once() -> None:
            if breaker is None:
                await self._attempt(piece)
            else:
                await breaker.call(lambda: self._attempt(piece))

        self._unsure = None
        try:
            await self.retry.call(once, on_retry=self._on_retry)
        finally:
            self._unsure = None
            if self._ctx is not None:
                self._ctx.allow = True

    async def write(self, batch: Batch) -> None:
        n = len(batch)
        self.stats.batches += 1
        self.stats.rows += n
        if self.rate_limit is not None and self.rate_unit == "rows" and n:
            self.stats.rate_limited_seconds += await self.rate_limit.acquire(n)
        try:
            await self._write_piece(batch, final=True)
        except Exception as exc:
            if not self._is_bad_data(exc) or self.on_bad_data == "fail" or n == 0:
                raise
            self.log.warning("batch has bad data: isolating rows", rows=n,
                             error_type=type(exc).__name__, error=str(exc)[:300])
            await self._bisect(batch, 0, n, exc)
            await self._flush_dead_letters()
        self._check_ratio(self._stage())

    def _stage(self) -> str:
        return self._ctx.stage if self._ctx is not None else f"sink:{self.name}"

    async def _bisect(self, batch: Batch, lo: int, hi: int, exc: BaseException) -> None:
        """Rows ``lo..hi`` of ``batch`` failed with bad data ``exc``: write the good ones in
        order and record the bad ones."""
        if hi - lo == 1:
            pipeline = self._ctx.pipeline if self._ctx is not None else ""
            self._record_bad(batch, lo, exc, pipeline, self._stage())
            return
        mid = (lo + hi) // 2
        n = len(batch)
        left_ok = False
        for a, b in ((lo, mid), (mid, hi)):
            if a == mid and left_ok and b - a > 1:
                # the whole failed and the left half did not: the right half fails, so split
                # it without trying (single rows are always tried: their own error is the
                # reason, and an error that depends on the batch size spares them)
                await self._bisect(batch, a, b, exc)
                continue
            final = b == n
            if final:
                await self._flush_dead_letters()
            self.stats.bisect_writes += 1
            try:
                await self._write_piece(_slice(batch, a, b), final)
            except Exception as sub:
                if not self._is_bad_data(sub):
                    raise
                await self._bisect(batch, a, b, sub)
            else:
                left_ok = a == lo


class ResilientOperator(Operator, _Isolator):
    """Wrap an operator: retry transient errors in ``process`` and isolate rows whose
    processing fails with bad data (bisection), like :class:`Resilient` does for sinks.

    Bisection calls ``process`` again on parts of a batch, so the operator must not keep
    state from a call that raised (stateless maps, filters, enrichment calls are fine).

    :param pipeline: recorded in dead letters (operators do not see the pipeline name).
    """

    def __init__(
        self,
        operator: Operator,
        *,
        retry: RetryPolicy | None = None,
        on_bad_data: BadDataPolicy = "fail",
        dead_letter: DeadLetterSink | None = None,
        max_bad_ratio: float | None = None,
        min_rows_for_ratio: int = 0,
        pipeline: str = "",
        classifier: Callable[[BaseException], Classification] = classify,
    ) -> None:
        self.operator = operator
        self.name = stage_name(operator)
        self.pipeline = pipeline
        self.classifier = classifier
        self.retry = retry if retry is not None else RetryPolicy(classifier=classifier)
        self.stats = ResilienceStats()
        self.log = get_logger(stage=f"op:{self.name}")
        self._setup_isolation(on_bad_data, dead_letter, max_bad_ratio, min_rows_for_ratio)
        self._opened = False

    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]
        """The wrapped operator's capabilities."""
        return capabilities_of(self.operator)

    def transform_schema(self, schema: Schema) -> Schema | None:
        return self.operator.transform_schema(schema)

    def snapshot_state(self) -> Any:
        return self.operator.snapshot_state()

    def restore_state(self, state: Any) -> None:
        self.operator.restore_state(state)

    @property
    def metrics(self) -> dict[str, Any]:
        """Live counters of this wrapper."""
        self.stats.retries = self.retry.stats.retries
        return self.stats.to_dict()

    def extra_metrics(self) -> dict[str, Any]:
        """The kernel's hook: these counters appear in ``StageMetrics.extra`` (with the
        wrapped operator's own, if it reports any)."""
        inner = getattr(self.operator, "extra_metrics", None)
        return {**(dict(inner()) if callable(inner) else {}), **self.metrics}

    async def open(self, context: StageContext) -> None:
        if context.dead_letter is None:
            context.dead_letter = self.dead_letter
        await self.operator.open(context)

    async def close(self) -> None:
        await self.operator.close()

    async def _call(self, batch: Batch) -> list[Batch]:
        out: OperatorOutput = await self.retry.call(lambda: self.operator.process(batch))
        if out is None:
            return []
        if isinstance(out, Batch):
            return [out]
        return list(out)

    async def process(self, batch: Batch) -> OperatorOutput:
        if not self._opened and self.dead_letter is not None:
            await self.dead_letter.open()
            self._opened = True
        n = len(batch)
        self.stats.batches += 1
        self.stats.rows += n
        try:
            outs = await self._call(batch)
        except Exception as exc:
            if not self._is_bad_data(exc) or self.on_bad_data == "fail" or n == 0:
                raise
            outs = []
            await self._bisect(batch, 0, n, exc, outs)
            await self._flush_dead_letters()
        self._check_ratio(f"op:{self.name}")
        return outs

    async def _bisect(self, batch: Batch, lo: int, hi: int, exc: BaseException,
                      outs: list[Batch]) -> None:
        if hi - lo == 1:
            self._record_bad(batch, lo, exc, self.pipeline, f"op:{self.name}")
            return
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            self.stats.bisect_writes += 1
            try:
                outs.extend(await self._call(_slice(batch, a, b)))
            except Exception as sub:
                if not self._is_bad_data(sub):
                    raise
                await self._bisect(batch, a, b, sub, outs)

    async def flush(self) -> OperatorOutput:
        return await self.operator.flush()
