"""The pipeline runner: one source, operators, one or more sinks, joined by bounded channels."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio

from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability, has
from etlsync.core.channel import Channel
from etlsync.core.checkpoint import Checkpoint, CheckpointStore, MemoryCheckpointStore
from etlsync.core.errors import StageError
from etlsync.core.metrics import RunSummary, StageMetrics, now
from etlsync.core.observe import Event, EventKind, MetricsObserver, Observer
from etlsync.core.preview import FixedCheckpoint, Preview, PreviewSink, output_schema
from etlsync.core.run import Run, StateInterval
from etlsync.core.stages import Operator, Sink, Source, stage_name
from etlsync.log import get_logger

_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def _gc_tuned(threshold: int | None) -> Iterator[None]:
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
    :param checkpoint_store: where the checkpoint lives. Default: the store of the first
        ``TRANSACTIONAL`` sink (which writes it in its own transactions: exactly-once),
        else process memory. A store at the location a transactional sink writes is owned
        by that sink: the runner never writes it.
    :param channel_batches: batches a channel may hold.
    :param channel_rows: rows a channel may hold (one batch is always admitted).
    :param gc_threshold: generation-0 threshold of Python's cyclic GC while running (``None``
        leaves the GC alone); see :func:`_gc_tuned`.
    :param observers: callables receiving every :class:`~etlsync.core.observe.Event`.
    :param state_interval: how often stateful operators are snapshotted (default: after
        every source batch); see :class:`StateInterval`.

    ``await pipeline.run()`` returns a :class:`RunSummary`; :meth:`stop` (or SIGINT/SIGTERM
    in the main thread) drains in-flight batches, commits the last checkpoint and returns.
    A checkpoint is committed only once every sink has made all data before it durable.
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
        observers: Sequence[Observer] = (),
        state_interval: StateInterval | None = None,
    ) -> None:
        sink_list = [sinks] if isinstance(sinks, Sink) else list(sinks)
        if not sink_list:
            raise ValueError(f"pipeline {name!r} needs at least one sink")
        self.name = name
        self.source = source
        self.operators = list(operators)
        self.sinks = sink_list
        self.checkpoint_store = checkpoint_store
        self.channel_batches = channel_batches
        self.channel_rows = channel_rows
        self.gc_threshold = gc_threshold
        self.state_interval = state_interval or StateInterval()
        self.source_name = _unique_names("source", [source])[0]
        self.operator_names = _unique_names("op", self.operators)
        self.sink_names = _unique_names("sink", self.sinks)
        self.stateful = [(n, op) for n, op in zip(self.operator_names, self.operators, strict=True)
                          if has(op, Capability.STATEFUL)]
        self._counters = MetricsObserver(
            [self.source_name, *self.operator_names, *self.sink_names])
        self._observers: list[Observer] = [self._counters, *observers]
        self.stop_requested = False
        """A stop was asked for: the source stops reading and the run drains."""
        self._running = False
        self._run: Run | None = None
        self.preview_rows: int | None = None
        """Preview mode: stop once this many rows came out of the operators."""
        self.log = get_logger(pipeline=name)

    # -- observers ---------------------------------------------------------------------
    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Send every event to ``observer``; returns a function that unsubscribes it."""
        self._observers.append(observer)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(observer)
        return unsubscribe

    def emit(self, kind: EventKind, stage: str = "", **fields: Any) -> None:
        event = Event(kind, self.name, stage, **fields)
        for observer in tuple(self._observers):
            try:
                observer(event)
            except Exception as exc:  # noqa: BLE001 - an observer never fails the pipeline
                self.log.error("observer failed: unsubscribed", observer=repr(observer),
                               error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(ValueError):
                    self._observers.remove(observer)

    # -- control -----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask a running pipeline to stop: the source stops reading, in-flight batches are
        written, the last checkpoint is committed and ``run()`` returns. Thread-unsafe; from
        another thread use ``loop.call_soon_threadsafe(pipeline.stop)``."""
        self.stop_requested = True
        task = self._run.source_task if self._run is not None else None
        if task is not None and not task.done():
            task.cancel()

    @property
    def metrics(self) -> dict[str, StageMetrics]:
        """Live per-stage counters, including the depth of each stage's input channel."""
        stages = self._counters.stages
        for key, ch in self.channels.items():
            m = stages.get(key)
            if m is not None:
                m.channel_batches, m.channel_rows = len(ch), ch.rows
        for key, stage in zip([self.source_name, *self.operator_names, *self.sink_names],
                              [self.source, *self.operators, *self.sinks], strict=True):
            hook = getattr(stage, "extra_metrics", None)
            if callable(hook) and key in stages:
                stages[key].extra = dict(hook())
        return stages

    @property
    def channels(self) -> dict[str, Channel[Batch]]:
        """The running pipeline's channels, keyed by the stage that reads them."""
        return dict(self._run.channels) if self._run is not None else {}

    def resolve_checkpoint_store(self) -> tuple[CheckpointStore, int | None]:
        """The store this pipeline resumes from, and the index of the sink that owns it
        (writes it in its own transactions), if one does."""
        owners = [i for i, s in enumerate(self.sinks) if has(s, Capability.TRANSACTIONAL)]
        explicit = self.checkpoint_store
        if explicit is None:
            for i in owners:
                store = self.sinks[i].checkpoint_store()
                if store is not None:
                    return store, i
            return MemoryCheckpointStore(), None
        if explicit.location is not None:
            for i in owners:
                store = self.sinks[i].checkpoint_store()
                if store is not None and store.location == explicit.location:
                    return explicit, i
        return explicit, None

    def start_position(self, resume: Checkpoint | None) -> Any:
        """Where the source starts for a run resuming from ``resume``."""
        if resume is None:
            return None
        if not resume.pass_open and has(self.source, Capability.PASSES):
            return self.source.next_pass(resume.position)
        return resume.position

    # -- run -----------------------------------------------------------------------------
    def run_sync(self) -> RunSummary:
        """Run to the end from synchronous code (a script): ``pipeline.run_sync()``."""
        return anyio.run(self.run)

    async def preview(self, limit: int = 10) -> Preview:
        """A dry run: the resume point, the schemas and the first ``limit`` rows after the
        operators; no sink is opened, nothing is written or committed."""
        result = Preview()
        store, _ = self.resolve_checkpoint_store()
        try:
            resume = await store.peek(self.name)
        except Exception as exc:  # noqa: BLE001 - a dry run reports what it cannot learn
            resume = None
            result.notes.append(f"checkpoint unavailable: {type(exc).__name__}: {exc}")
        finally:
            await store.close()
        result.resume_from = self.start_position(resume)
        try:
            result.source_schemas = await self.source.discover()
        except Exception as exc:  # noqa: BLE001
            result.notes.append(f"source schema unavailable: {type(exc).__name__}: {exc}")
        for stream, schema in result.source_schemas.items():
            out = output_schema(self.operators, schema)
            if out is not None:
                result.output_schemas[stream] = out
        for sink in self.sinks:
            key = stage_name(sink)
            try:
                result.target_schemas[key] = await sink.describe()
            except Exception as exc:  # noqa: BLE001
                result.target_schemas[key] = None
                result.notes.append(f"{key}: target schema unavailable: "
                                    f"{type(exc).__name__}: {exc}")
        if limit > 0:
            collect = PreviewSink(limit)
            probe = Pipeline(self.source, self.operators, [collect], name=self.name,
                             checkpoint_store=FixedCheckpoint(resume), gc_threshold=None,
                             channel_batches=self.channel_batches,
                             channel_rows=self.channel_rows)
            collect.stop = probe.stop
            probe.preview_rows = limit
            await probe.run(handle_signals=False)
            result.rows = collect.rows
        return result

    async def run(self, *, handle_signals: bool | None = None) -> RunSummary:
        """Run until the source is exhausted, :meth:`stop` is called, or a stage fails.

        :param handle_signals: install SIGINT/SIGTERM handlers that request a graceful stop
            (a second signal cancels). Default: only in the main thread.
        :raises StageError: naming the failed stage; the last safe checkpoint is committed.
        """
        if self._running:
            raise RuntimeError(f"pipeline {self.name!r} is already running")
        self._running = True
        self.stop_requested = False
        started, started_wall = now(), time.time()
        store, owner = self.resolve_checkpoint_store()
        status, error = "completed", None
        restore = self._install_signals(handle_signals)
        run: Run | None = None
        try:
            resume = await self.guard("checkpoint", store.load(self.name))
            run = self._run = Run(self, store, owner, resume)
            position = self.start_position(resume)
            # every run starts from the committed state (None: empty), also when the same
            # operator objects ran before in this process and got further than the checkpoint
            saved = (resume.state if resume is not None else None) or {}
            for key, op in self.stateful:
                op.restore_state(saved.get(key))
            self.log.info("pipeline starting", resume_from=position)
            self.emit(EventKind.STARTED, position=position)
            with _gc_tuned(self.gc_threshold):
                await run.stages(position, resume)
            status = "stopped" if self.stop_requested else "completed"
        except StageError as exc:
            status, error = "failed", str(exc)
            self.log.error("pipeline failed", stage=exc.stage, error=str(exc.cause))
            raise
        finally:
            restore()
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await store.close()
            self._running = False
            self._summary = RunSummary(
                pipeline=self.name, status=status, started_at=started_wall,
                duration_seconds=now() - started, stages=dict(self.metrics),
                committed_position=None if run is None else run.position,
                commits=0 if run is None else run.commits, error=error)
            self._run = None
            self.emit(EventKind.FINISHED, state=status, summary=self._summary)
        self.log.info("pipeline finished", status=status, rows=self._summary.rows_read,
                      seconds=round(self._summary.duration_seconds, 3))
        return self._summary

    async def guard(self, stage: str, awaitable: Any) -> Any:
        """Await ``awaitable``; its error becomes one :class:`StageError` naming ``stage``."""
        try:
            return await awaitable
        except (asyncio.CancelledError, StageError):
            raise
        except Exception as exc:
            self.emit(EventKind.ERROR, stage, error=exc)
            raise StageError(self.name, stage, exc) from exc

    # -- signals -------------------------------------------------------------------------
    def _install_signals(self, handle: bool | None) -> Callable[[], None]:
        if handle is None:
            handle = threading.current_thread() is threading.main_thread()
        if not handle:
            return lambda: None
        loop = asyncio.get_running_loop()
        run_task = asyncio.current_task()
        installed: list[int] = []

        def on_signal() -> None:
            if self.stop_requested and run_task is not None:
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

