"""The pipeline runner: one source, operators, one or more sinks, joined by bounded channels."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from etlsync.core.batch import Batch
from etlsync.core.channel import Channel, ChannelClosed
from etlsync.core.checkpoint import CheckpointStore, CheckpointTracker, MemoryCheckpointStore
from etlsync.core.errors import StageError
from etlsync.core.metrics import RunSummary, StageMetrics, now
from etlsync.core.stages import (
    Operator,
    OperatorOutput,
    Sink,
    Source,
    StageContext,
    stage_name,
)
from etlsync.log import get_logger

_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def _gc_tuned(threshold: int | None) -> Any:
    """Raise the cyclic GC's generation-0 threshold while pipelines run.

    Batches keep thousands of row dicts alive; with the default threshold (700 allocations)
    the collector re-traverses them constantly and costs more than the pipeline itself.
    Row dicts hold no cycles, so collecting less often loses nothing. Restored when the last
    running pipeline of the process finishes.
    """
    global _gc_users, _gc_saved
    if threshold is None:
        yield
        return
    if _gc_users == 0:
        _gc_saved = gc.get_threshold()
        gc.set_threshold(max(threshold, _gc_saved[0]), *_gc_saved[1:])
    _gc_users += 1
    try:
        yield
    finally:
        _gc_users -= 1
        if _gc_users == 0 and _gc_saved is not None:
            gc.set_threshold(*_gc_saved)


def _as_list(out: OperatorOutput) -> list[Batch]:
    if out is None:
        return []
    if isinstance(out, Batch):
        return [out]
    return list(out)


def _unique_names(prefix: str, stages: Sequence[object]) -> list[str]:
    names: list[str] = []
    for stage in stages:
        base = f"{prefix}:{stage_name(stage)}"
        name, i = base, 2
        while name in names:
            name, i = f"{base}#{i}", i + 1
        names.append(name)
    return names


class Pipeline:
    """Runs ``source -> operators -> sinks`` with backpressure and checkpoints.

    :param source: where batches come from.
    :param operators: applied in order to every batch (in one task: per-row work stays in
        plain loops; channels sit between source, operators and each sink).
    :param sinks: every batch goes to every sink; each sink writes in source order.
    :param name: identifies the pipeline in checkpoints, logs and metrics.
    :param checkpoint_store: where the committed position lives (default: in memory).
    :param channel_batches: batches a channel may hold.
    :param channel_rows: rows a channel may hold (one batch is always admitted).
    :param gc_threshold: generation-0 threshold of Python's cyclic GC while running (``None``
        leaves the GC alone); see :func:`_gc_tuned`.

    ``await pipeline.run()`` returns a :class:`RunSummary`; :meth:`stop` (or SIGINT/SIGTERM
    in the main thread) drains in-flight batches, commits the last checkpoint and returns.
    A position is committed only once every sink has made all data before it durable.
    """

    def __init__(
        self,
        source: Source,
        operators: Sequence[Operator] = (),
        sinks: Sequence[Sink] | Sink = (),
        *,
        name: str = "pipeline",
        checkpoint_store: CheckpointStore | None = None,
        channel_batches: int = 2,
        channel_rows: int = 20_000,
        gc_threshold: int | None = 100_000,
    ) -> None:
        sink_list = [sinks] if isinstance(sinks, Sink) else list(sinks)
        if not sink_list:
            raise ValueError(f"pipeline {name!r} needs at least one sink")
        self.name = name
        self.source = source
        self.operators = list(operators)
        self.sinks = sink_list
        self.checkpoint_store: CheckpointStore = checkpoint_store or MemoryCheckpointStore()
        self.channel_batches = channel_batches
        self.channel_rows = channel_rows
        self.gc_threshold = gc_threshold
        self._source_name = _unique_names("source", [source])[0]
        self._op_names = _unique_names("op", self.operators)
        self._sink_names = _unique_names("sink", self.sinks)
        self._metrics: dict[str, StageMetrics] = {
            n: StageMetrics(n) for n in [self._source_name, *self._op_names, *self._sink_names]
        }
        self._channels: dict[str, Channel[Batch]] = {}
        self._stop_requested = False
        self._stages_running = 0
        self._tracker = CheckpointTracker()
        self._source_task: asyncio.Task[None] | None = None
        self._running = False
        self.log = get_logger(pipeline=name)

    # -- control -----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask a running pipeline to stop: the source stops reading, in-flight batches are
        written, the last checkpoint is committed and ``run()`` returns. Thread-unsafe; from
        another thread use ``loop.call_soon_threadsafe(pipeline.stop)``."""
        self._stop_requested = True
        task = self._source_task
        if task is not None and not task.done():
            task.cancel()

    @property
    def metrics(self) -> dict[str, StageMetrics]:
        """Live per-stage counters, including the depth of each stage's input channel."""
        for key, ch in self._channels.items():
            m = self._metrics.get(key)
            if m is not None:
                m.channel_batches, m.channel_rows = len(ch), ch.rows
        stages = zip([self._source_name, *self._op_names, *self._sink_names],
                     [self.source, *self.operators, *self.sinks], strict=True)
        for key, stage in stages:
            hook = getattr(stage, "extra_metrics", None)
            if callable(hook) and key in self._metrics:
                self._metrics[key].extra = dict(hook())
        return self._metrics

    @property
    def channels(self) -> dict[str, Channel[Batch]]:
        """The running pipeline's channels, keyed by the stage that reads them."""
        return dict(self._channels)

    # -- run -----------------------------------------------------------------------------
    async def run(self, *, handle_signals: bool | None = None) -> RunSummary:
        """Run until the source is exhausted, :meth:`stop` is called, or a stage fails.

        :param handle_signals: install SIGINT/SIGTERM handlers that request a graceful stop
            (a second signal cancels). Default: only in the main thread.
        :raises StageError: naming the failed stage; the last safe checkpoint is committed.
        """
        if self._running:
            raise RuntimeError(f"pipeline {self.name!r} is already running")
        self._running = True
        self._stop_requested = False
        started_wall, started = time.time(), now()
        wakeup = asyncio.Event()
        tracker = self._tracker = CheckpointTracker(on_advance=wakeup.set)
        committed: dict[str, Any] = {"version": 0, "position": None, "count": 0}
        status, error = "completed", None
        restore = self._install_signals(handle_signals)
        log = self.log
        try:
            position = await self.checkpoint_store.load(self.name)
            log.info("pipeline starting", resume_from=position)
            with _gc_tuned(self.gc_threshold):
                await self._run_stages(position, tracker, committed, wakeup)
            status = "stopped" if self._stop_requested else "completed"
        except StageError as exc:
            status, error = "failed", str(exc)
            log.error("pipeline failed", stage=exc.stage, error=str(exc.cause))
            raise
        finally:
            restore()
            self._source_task = None
            self._running = False
            self._summary = RunSummary(
                pipeline=self.name,
                status=status,
                started_at=started_wall,
                duration_seconds=now() - started,
                stages={k: v for k, v in self.metrics.items()},
                committed_position=committed["position"],
                commits=committed["count"],
                error=error,
            )
            self._channels = {}
        log.info("pipeline finished", status=status, rows=self._summary.rows_read,
                 seconds=round(self._summary.duration_seconds, 3))
        return self._summary

    async def _run_stages(
        self,
        position: Any,
        tracker: CheckpointTracker,
        committed: dict[str, Any],
        wakeup: asyncio.Event,
    ) -> None:
        src_ch: Channel[Batch] = Channel(self.channel_batches, self.channel_rows)
        sink_chs = [Channel[Batch](self.channel_batches, self.channel_rows) for _ in self.sinks]
        self._channels = {"transform": src_ch, **dict(zip(self._sink_names, sink_chs, strict=True))}
        if self.operators:
            self._channels[self._op_names[0]] = self._channels.pop("transform")
        opened: list[Sink] = []
        contexts: list[StageContext] = []
        try:
            for name, sink in zip(self._sink_names, self.sinks, strict=True):
                ctx = StageContext(self.name, name, self.log.bind(stage=name), tracker)
                contexts.append(ctx)
                await self._guard(name, sink.open(ctx))
                opened.append(sink)
            try:
                async with asyncio.TaskGroup() as tg:
                    self._stages_running = 2 + len(self.sinks)

                    def finished(_: object) -> None:
                        self._stages_running -= 1
                        wakeup.set()

                    self._source_task = tg.create_task(
                        self._source_stage(position, tracker, src_ch))
                    self._source_task.add_done_callback(finished)
                    tg.create_task(self._transform_stage(src_ch, sink_chs)).add_done_callback(finished)
                    for name, sink, ch in zip(self._sink_names, self.sinks, sink_chs, strict=True):
                        tg.create_task(self._sink_stage(name, sink, ch)).add_done_callback(finished)
                    tg.create_task(self._committer(tracker, committed, wakeup))
            except BaseExceptionGroup as group:
                stage_errors = [e for e in _leaves(group) if isinstance(e, StageError)]
                if not stage_errors:
                    raise
                first = stage_errors[0]
                for other in stage_errors[1:]:
                    first.add_note(f"also failed: {other}")
                raise first from first.cause
            else:
                if not self._stop_requested:
                    for ctx in contexts:
                        ctx.source_exhausted = True
            finally:
                await self._final_commit(tracker, committed)
        finally:
            for sink in reversed(opened):
                with contextlib.suppress(Exception):
                    await sink.close()

    async def _guard(self, stage: str, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (asyncio.CancelledError, StageError):
            raise
        except Exception as exc:
            self._metrics[stage].errors += 1
            raise StageError(self.name, stage, exc) from exc

    async def _source_stage(self, position: Any, tracker: CheckpointTracker,
                            out: Channel[Batch]) -> None:
        name = self._source_name
        m = self._metrics[name]
        agen = self.source.read(position)
        try:
            t0 = now()
            while not self._stop_requested:
                try:
                    batch = await agen.__anext__()
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    if self._stop_requested:
                        return
                    raise
                except Exception as exc:
                    m.errors += 1
                    raise StageError(self.name, name, exc) from exc
                ticket = tracker.issue(batch.position)
                ticket.retain()
                batch.tickets = (ticket,)
                n = len(batch)
                m.record(n, n, 1, now() - t0)
                try:
                    await out.send(batch)
                except asyncio.CancelledError:
                    if self._stop_requested:
                        return
                    raise
                t0 = now()
        finally:
            out.close()
            with contextlib.suppress(Exception):
                await agen.aclose()  # type: ignore[attr-defined]

    async def _transform_stage(self, inp: Channel[Batch], outs: list[Channel[Batch]]) -> None:
        fan = len(outs)
        try:
            while True:
                try:
                    batch = await inp.receive()
                except ChannelClosed:
                    break
                for out_batch in await self._apply(0, [batch]):
                    await self._fan_out(out_batch, outs, fan)
            for i in range(len(self.operators)):
                name, op = self._op_names[i], self.operators[i]
                with self._tracker.deferred():
                    flushed = _as_list(await self._guard(name, op.flush()))
                    for out in flushed:
                        out.retain()
                for out_batch in await self._apply(i + 1, flushed):
                    await self._fan_out(out_batch, outs, fan)
        finally:
            for ch in outs:
                ch.close()

    @staticmethod
    async def _fan_out(batch: Batch, outs: list[Channel[Batch]], fan: int) -> None:
        if fan > 1:
            batch.retain(fan - 1)
        for ch in outs:
            await ch.send(batch)

    async def _apply(self, start: int, batches: list[Batch]) -> list[Batch]:
        """Run ``batches`` through operators ``start..``; move ticket holds to the outputs."""
        for i in range(start, len(self.operators)):
            op, name = self.operators[i], self._op_names[i]
            m = self._metrics[name]
            produced: list[Batch] = []
            for batch in batches:
                t0 = now()
                rows_out = 0
                with self._tracker.deferred():
                    outs = _as_list(await self._guard(name, op.process(batch)))
                    for out in outs:
                        if not out.tickets:
                            out.tickets = batch.tickets
                        out.retain()
                        rows_out += len(out)
                    batch.release()
                m.record(len(batch), rows_out, len(outs), now() - t0)
                produced.extend(outs)
            batches = produced
            if not batches:
                break
        return batches

    async def _sink_stage(self, name: str, sink: Sink, inp: Channel[Batch]) -> None:
        m = self._metrics[name]
        while True:
            try:
                batch = await inp.receive()
            except ChannelClosed:
                return
            t0 = now()
            await self._guard(name, sink.write(batch))
            n = len(batch)
            m.record(n, n, 1, now() - t0)
            batch.release()

    async def _committer(self, tracker: CheckpointTracker, committed: dict[str, Any],
                         wakeup: asyncio.Event) -> None:
        """Commit the committable position whenever it advances; commits coalesce while one
        is in flight. Ends once every stage has finished."""
        while True:
            await wakeup.wait()
            wakeup.clear()
            await self._commit_if_newer(tracker, committed)
            if self._stages_running == 0:
                return

    async def _commit_if_newer(self, tracker: CheckpointTracker, committed: dict[str, Any]) -> None:
        if not tracker.has_committable or tracker.version == committed["version"]:
            return
        version, position = tracker.version, tracker.committable
        await self._guard("checkpoint", self.checkpoint_store.commit(self.name, position))
        committed.update(version=version, position=position, count=committed["count"] + 1)
        await self._guard(self._source_name, self.source.on_commit(position))

    async def _final_commit(self, tracker: CheckpointTracker, committed: dict[str, Any]) -> None:
        """Commit what every sink made durable, also after a failure (it is safe)."""
        try:
            await self._commit_if_newer(tracker, committed)
        except StageError as exc:
            self.log.error("final checkpoint commit failed", error=str(exc))

    # -- signals -------------------------------------------------------------------------
    def _install_signals(self, handle: bool | None) -> Any:
        if handle is None:
            handle = threading.current_thread() is threading.main_thread()
        if not handle:
            return lambda: None
        loop = asyncio.get_running_loop()
        run_task = asyncio.current_task()
        installed: list[int] = []

        def on_signal() -> None:
            if self._stop_requested and run_task is not None:
                run_task.cancel()
            else:
                self.log.warning("stop requested by signal; draining")
                self.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

        def restore() -> None:
            for sig in installed:
                loop.remove_signal_handler(sig)

        return restore


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
