"""The pipeline runner: one source, operators, one or more sinks, joined by bounded channels."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability, has
from etlsync.core.channel import Channel, ChannelClosed
from etlsync.core.checkpoint import Checkpoint, CheckpointStore, MemoryCheckpointStore
from etlsync.core.errors import StageError
from etlsync.core.metrics import RunSummary, StageMetrics, now
from etlsync.core.observe import Event, EventKind, MetricsObserver, Observer
from etlsync.core.preview import Preview, preview_pipeline
from etlsync.core.stages import Operator, OperatorOutput, Sink, Source, StageContext, stage_name
from etlsync.core.tracker import CheckpointTracker, Ticket
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


@dataclass(frozen=True, slots=True)
class StateInterval:
    """How often the runner snapshots stateful operators (docs/concepts/checkpoints.md).

    The default snapshots after every source batch: every batch is a resume point. Large
    state (many groups, a big dedupe set) costs a copy and an encoding per snapshot, so a
    pipeline may snapshot only every ``batches`` source batches or ``seconds`` seconds; the
    tickets in between carry no state and are not resume points (a restart replays them from
    the last snapshot, which the restored state has not seen: nothing lost, nothing counted
    twice). A snapshot is always taken at the end of a pass, while stopping, and, with
    ``on_output`` (the default), after any batch whose operators emitted rows, so a sink
    never holds output the committed state does not account for (exactly-once into any
    sink). ``on_output=False`` also skips those: their output is replayed after a crash,
    which a keyed (upsert) sink applies idempotently.
    """

    batches: int = 1
    seconds: float | None = None
    on_output: bool = True

    def __post_init__(self) -> None:
        if self.batches < 1:
            raise ValueError(f"StateInterval.batches must be at least 1, not {self.batches}")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError(f"StateInterval.seconds must not be negative, not {self.seconds}")

    @property
    def every_batch(self) -> bool:
        return self.batches == 1 and self.seconds is None


class _Run:
    """The mutable state of one run (so a Pipeline object can be run again)."""

    def __init__(self, store: CheckpointStore, owner: int | None,
                 resume: Checkpoint | None) -> None:
        self.store = store
        self.owner = owner
        self.wakeup = asyncio.Event()
        self.tracker = CheckpointTracker(on_advance=self.wakeup.set, start=resume)
        self.version = 0
        self.position: Any = None
        self.commits = 0
        self.stored_seq = -1
        self.lock = asyncio.Lock()
        self.contexts: list[StageContext] = []
        self.last_position: Any = None
        self.last_positioned = False
        """The last source batch had a position (it ended outside an upstream transaction)."""
        self.last_end_of_pass = False
        self.gates: dict[int, _Gate] = {}
        """With an owning sink and others: per batch, the others' writes the owner waits for."""
        self.unsnapshotted = 0
        """Source batches since the last state snapshot (:class:`StateInterval`)."""
        self.snapshot_at = time.monotonic()


class _Gate:
    """Opens once ``n`` other sinks have made a batch durable."""

    __slots__ = ("_event", "_left")

    def __init__(self, n: int) -> None:
        self._left = n
        self._event = asyncio.Event()

    def done_one(self) -> None:
        self._left -= 1
        if self._left <= 0:
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


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
        self._source_name = _unique_names("source", [source])[0]
        self._op_names = _unique_names("op", self.operators)
        self._sink_names = _unique_names("sink", self.sinks)
        self._stateful = [(n, op) for n, op in zip(self._op_names, self.operators, strict=True)
                          if has(op, Capability.STATEFUL)]
        self._counters = MetricsObserver(
            [self._source_name, *self._op_names, *self._sink_names])
        self._observers: list[Observer] = [self._counters, *observers]
        self._channels: dict[str, Channel[Batch]] = {}
        self._stop_requested = False
        self._stages_running = 0
        self._source_task: asyncio.Task[None] | None = None
        self._running = False
        self._run: _Run | None = None
        self._preview_rows: int | None = None
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

    def _emit(self, kind: EventKind, stage: str = "", **fields: Any) -> None:
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
        self._stop_requested = True
        task = self._source_task
        if task is not None and not task.done():
            task.cancel()

    @property
    def metrics(self) -> dict[str, StageMetrics]:
        """Live per-stage counters, including the depth of each stage's input channel."""
        stages = self._counters.stages
        for key, ch in self._channels.items():
            m = stages.get(key)
            if m is not None:
                m.channel_batches, m.channel_rows = len(ch), ch.rows
        for key, stage in zip([self._source_name, *self._op_names, *self._sink_names],
                              [self.source, *self.operators, *self.sinks], strict=True):
            hook = getattr(stage, "extra_metrics", None)
            if callable(hook) and key in stages:
                stages[key].extra = dict(hook())
        return stages

    @property
    def channels(self) -> dict[str, Channel[Batch]]:
        """The running pipeline's channels, keyed by the stage that reads them."""
        return dict(self._channels)

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
        return await preview_pipeline(self, limit)

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
        started, started_wall = now(), time.time()
        store, owner = self.resolve_checkpoint_store()
        status, error = "completed", None
        restore = self._install_signals(handle_signals)
        run: _Run | None = None
        try:
            resume = await self._guard("checkpoint", store.load(self.name))
            run = self._run = _Run(store, owner, resume)
            position = self.start_position(resume)
            # every run starts from the committed state (None: empty), also when the same
            # operator objects ran before in this process and got further than the checkpoint
            saved = (resume.state if resume is not None else None) or {}
            for key, op in self._stateful:
                op.restore_state(saved.get(key))
            self.log.info("pipeline starting", resume_from=position)
            self._emit(EventKind.STARTED, position=position)
            with _gc_tuned(self.gc_threshold):
                await self._run_stages(position, resume, run)
            status = "stopped" if self._stop_requested else "completed"
        except StageError as exc:
            status, error = "failed", str(exc)
            self.log.error("pipeline failed", stage=exc.stage, error=str(exc.cause))
            raise
        finally:
            restore()
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await store.close()
            self._source_task = None
            self._running = False
            self._summary = RunSummary(
                pipeline=self.name, status=status, started_at=started_wall,
                duration_seconds=now() - started, stages=dict(self.metrics),
                committed_position=None if run is None else run.position,
                commits=0 if run is None else run.commits, error=error)
            self._channels = {}
            self._run = None
            self._emit(EventKind.FINISHED, state=status, summary=self._summary)
        self.log.info("pipeline finished", status=status, rows=self._summary.rows_read,
                      seconds=round(self._summary.duration_seconds, 3))
        return self._summary

    async def _run_stages(self, position: Any, resume: Checkpoint | None, run: _Run) -> None:
        src_ch: Channel[Batch] = Channel(self.channel_batches, self.channel_rows)
        sink_chs = [Channel[Batch](self.channel_batches, self.channel_rows) for _ in self.sinks]
        self._channels = {"transform": src_ch, **dict(zip(self._sink_names, sink_chs, strict=True))}
        if self.operators:
            self._channels[self._op_names[0]] = self._channels.pop("transform")
        opened: list[Sink] = []
        ops_opened: list[tuple[str, Operator]] = []
        try:
            for name, op in zip(self._op_names, self.operators, strict=True):
                ctx = StageContext(self.name, name, self.log.bind(stage=name), None,
                                   resume=resume)
                ctx.preview = self._preview_rows is not None
                await self._guard(name, op.open(ctx))
                ops_opened.append((name, op))
            for i, (name, sink) in enumerate(zip(self._sink_names, self.sinks, strict=True)):
                ctx = StageContext(self.name, name, self.log.bind(stage=name), run.tracker,
                                   resume=resume, owns_checkpoint=i == run.owner)
                run.contexts.append(ctx)
                self._emit(EventKind.STAGE, name, state="open")
                await self._guard(name, sink.open(ctx))
                opened.append(sink)
            try:
                async with asyncio.TaskGroup() as tg:
                    self._stages_running = 2 + len(self.sinks)

                    def finished(_: object) -> None:
                        self._stages_running -= 1
                        run.wakeup.set()

                    self._source_task = tg.create_task(self._source_stage(position, run, src_ch))
                    self._source_task.add_done_callback(finished)
                    tg.create_task(self._transform_stage(src_ch, sink_chs, run)
                                   ).add_done_callback(finished)
                    for i, (name, sink, ch) in enumerate(
                            zip(self._sink_names, self.sinks, sink_chs, strict=True)):
                        tg.create_task(self._sink_stage(i, name, sink, ch, run)
                                       ).add_done_callback(finished)
                    tg.create_task(self._committer(run))
            except BaseExceptionGroup as group:
                stage_errors = [e for e in _leaves(group) if isinstance(e, StageError)]
                if not stage_errors:
                    raise
                first = stage_errors[0]
                for other in stage_errors[1:]:
                    first.add_note(f"also failed: {other}")
                raise first from first.cause
            finally:
                with anyio.CancelScope(shield=True):
                    await self._final_commit(run)
        finally:
            for name, sink in reversed(list(zip(self._sink_names, opened, strict=False))):
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await sink.close()
                self._emit(EventKind.STAGE, name, state="closed")
            for _, op in reversed(ops_opened):
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await op.close()

    async def _guard(self, stage: str, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (asyncio.CancelledError, StageError):
            raise
        except Exception as exc:
            self._emit(EventKind.ERROR, stage, error=exc)
            raise StageError(self.name, stage, exc) from exc

    async def _source_stage(self, position: Any, run: _Run, out: Channel[Batch]) -> None:
        name = self._source_name
        agen = self.source.read(position)
        exhausted = False
        self._emit(EventKind.STAGE, name, state="running")
        try:
            t0 = now()
            while not self._stop_requested:
                try:
                    batch = await agen.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    break
                except asyncio.CancelledError:
                    if self._stop_requested:
                        return
                    raise
                except Exception as exc:
                    self._emit(EventKind.ERROR, name, error=exc)
                    raise StageError(self.name, name, exc) from exc
                if not await self._send_from_source(batch, run, out, t0):
                    return
                t0 = now()
            if exhausted and not run.last_end_of_pass and not has(self.source, Capability.CDC):
                # a finite source that does not mark its passes: the kernel closes the pass
                await self._send_from_source(Batch([], end_of_pass=True, position=None),
                                             run, out, now())
        finally:
            out.close()
            self._emit(EventKind.STAGE, name, state="finished")
            with contextlib.suppress(Exception):
                await agen.aclose()  # type: ignore[attr-defined]

    async def _send_from_source(self, batch: Batch, run: _Run, out: Channel[Batch],
                                t0: float) -> bool:
        ticket = run.tracker.issue(batch.position, batch.end_of_pass)
        ticket.retain()
        batch.tickets = (ticket,)
        run.last_end_of_pass = batch.end_of_pass
        if batch.position is not None:
            run.last_position = batch.position
            run.last_positioned = True
        elif not batch.end_of_pass:
            run.last_positioned = False
        self._emit(EventKind.BATCH_READ, self._source_name, rows=len(batch),
                   seconds=now() - t0, position=batch.position)
        try:
            await out.send(batch)
        except asyncio.CancelledError:
            if self._stop_requested:
                return False
            raise
        return True

    async def _transform_stage(self, inp: Channel[Batch], outs: list[Channel[Batch]],
                               run: _Run) -> None:
        fan = len(outs)
        previewed = 0
        try:
            while True:
                try:
                    batch = await inp.receive()
                except ChannelClosed:
                    break
                ticket = batch.tickets[0]
                ticket.retain()  # our own hold, until the state after this batch is known
                try:
                    produced = await self._apply(0, [batch])
                    if batch.end_of_pass:
                        produced = self._carry_end_of_pass(batch, produced)
                    if self._stateful:
                        self._snapshot_onto(ticket, batch, produced, run)
                finally:
                    ticket.release()
                for out_batch in produced:
                    await self._fan_out(out_batch, outs, fan, run)
                if self._preview_rows is not None:
                    previewed += sum(map(len, produced))
                    if previewed >= self._preview_rows:
                        self.stop()  # a dry run reads no further than it shows
                        return
            await self._flush_operators(outs, fan, run)
        finally:
            for ch in outs:
                ch.close()

    @staticmethod
    def _carry_end_of_pass(batch: Batch, produced: list[Batch]) -> list[Batch]:
        """The pass signal reaches the sinks whatever the operators did with the batch."""
        for b in produced:
            b.end_of_pass = False
        if produced:
            produced[-1].end_of_pass = True
            return produced
        marker = Batch([], stream=batch.stream, position=batch.position,
                       tickets=batch.tickets, end_of_pass=True)
        marker.retain()
        return [marker]

    def _snapshot(self) -> dict[str, Any]:
        return {key: op.snapshot_state() for key, op in self._stateful}

    def _snapshot_onto(self, ticket: Ticket, batch: Batch, produced: list[Batch],
                       run: _Run) -> None:
        """Put the operators' state on ``ticket``, or mark it as no resume point
        (:class:`StateInterval`)."""
        policy = self.state_interval
        run.unsnapshotted += 1
        due = (policy.every_batch or batch.end_of_pass or self._stop_requested
               or run.unsnapshotted >= policy.batches
               or (policy.seconds is not None
                   and time.monotonic() - run.snapshot_at >= policy.seconds)
               or (policy.on_output and any(len(b) for b in produced)))
        if not due:
            ticket.resume = False
            return
        if (ticket.position is None and batch.end_of_pass and run.unsnapshotted > 1
                and run.last_positioned):
            # the kernel's end-of-pass marker after batches without a snapshot: the pass
            # ends where the last batch did, with the state this snapshot takes
            ticket.position = run.last_position
        ticket.state = self._snapshot()
        run.unsnapshotted, run.snapshot_at = 0, time.monotonic()

    async def _flush_operators(self, outs: list[Channel[Batch]], fan: int, run: _Run) -> None:
        ticket: Ticket | None = None
        stopping = self._stop_requested
        if self._stateful and (not stopping or (run.unsnapshotted and run.last_positioned)):
            # end of the stream: flush() output gets a ticket of its own; on a stop, one
            # carrying the state of batches that got no snapshot (StateInterval)
            ticket = run.tracker.issue(run.last_position, run.last_end_of_pass)
            ticket.retain()
        try:
            for i in range(len(self.operators)):
                name, op = self._op_names[i], self.operators[i]
                if stopping and has(op, Capability.STATEFUL):
                    continue  # its state is in the checkpoint: the next run goes on from it
                with run.tracker.deferred():
                    flushed = _as_list(await self._guard(name, op.flush()))
                    for out in flushed:
                        if not out.tickets and ticket is not None:
                            out.tickets = (ticket,)
                        out.retain()
                for out_batch in await self._apply(i + 1, flushed):
                    await self._fan_out(out_batch, outs, fan, run)
            if ticket is not None:
                ticket.state = self._snapshot()
                run.unsnapshotted = 0
        finally:
            if ticket is not None:
                ticket.release()

    @staticmethod
    async def _fan_out(batch: Batch, outs: list[Channel[Batch]], fan: int, run: _Run) -> None:
        if fan > 1:
            batch.retain(fan - 1)
            if run.owner is not None:
                run.gates[id(batch)] = _Gate(fan - 1)
        for ch in outs:
            await ch.send(batch)

    async def _apply(self, start: int, batches: list[Batch]) -> list[Batch]:
        """Run ``batches`` through operators ``start..``; move ticket holds to the outputs."""
        tracker = self._run.tracker if self._run is not None else None
        for i in range(start, len(self.operators)):
            op, name = self.operators[i], self._op_names[i]
            produced: list[Batch] = []
            for batch in batches:
                t0 = now()
                rows_out = 0
                with tracker.deferred() if tracker is not None else contextlib.nullcontext():
                    outs = _as_list(await self._guard(name, op.process(batch)))
                    for out in outs:
                        if not out.tickets:
                            out.tickets = batch.tickets
                        out.retain()
                        rows_out += len(out)
                    batch.release()
                self._emit(EventKind.BATCH_PROCESSED, name, rows=len(batch), rows_out=rows_out,
                           batches=len(outs), seconds=now() - t0)
                produced.extend(outs)
            batches = produced
            if not batches:
                break
        return batches

    async def _sink_stage(self, index: int, name: str, sink: Sink, inp: Channel[Batch],
                          run: _Run) -> None:
        ctx = run.contexts[index]
        owner = index == run.owner
        self._emit(EventKind.STAGE, name, state="running")
        while True:
            try:
                batch = await inp.receive()
            except ChannelClosed:
                self._emit(EventKind.STAGE, name, state="finished")
                return
            if owner:
                # the owning sink writes last, so the checkpoint in its transaction is the
                # one its batch completes: exactly-once for it, at-least-once for the others
                gate = run.gates.get(id(batch))
                if gate is not None:
                    await gate.wait()
                    del run.gates[id(batch)]
                t0 = now()
                async with run.lock:
                    ctx.offered = None
                    await self._guard(name, sink.write(batch))
                    if ctx.offered is not None:
                        run.stored_seq = max(run.stored_seq, ctx.offered.seq)
            else:
                t0 = now()
                gate = run.gates.get(id(batch))
                await self._guard(name, sink.write(batch))
                if gate is not None:
                    gate.done_one()
            self._emit(EventKind.BATCH_WRITTEN, name, rows=len(batch), seconds=now() - t0,
                       position=batch.position)
            batch.release()

    async def _committer(self, run: _Run) -> None:
        """Commit the committable checkpoint whenever it advances; commits coalesce while one
        is in flight. Ends once every stage has finished."""
        while True:
            await run.wakeup.wait()
            run.wakeup.clear()
            await self._commit_if_newer(run)
            if self._stages_running == 0:
                return

    async def _commit_if_newer(self, run: _Run) -> None:
        tracker = run.tracker
        checkpoint = tracker.committable
        if checkpoint is None or tracker.version == run.version:
            return
        version, t0 = tracker.version, now()
        if run.owner is None:
            await self._guard("checkpoint", run.store.commit(self.name, checkpoint))
        else:
            await self._store_through_owner(run, checkpoint)
        run.version, run.position, run.commits = version, checkpoint.position, run.commits + 1
        self._emit(EventKind.COMMIT, "checkpoint", position=checkpoint.position,
                   seconds=now() - t0)
        await self._guard(self._source_name, self.source.on_commit(checkpoint.position))

    async def _store_through_owner(self, run: _Run, checkpoint: Checkpoint) -> None:
        """The owning sink stores every checkpoint: one its writes did not carry yet (data
        dropped by operators, several sinks) goes in a transaction of its own."""
        assert run.owner is not None
        sink, ctx = self.sinks[run.owner], run.contexts[run.owner]
        async with run.lock:
            if run.stored_seq >= checkpoint.seq:
                return
            ctx.forced, ctx.offered = checkpoint, None
            try:
                await self._guard(self._sink_names[run.owner], sink.write(Batch([])))
            finally:
                ctx.forced = None
            if ctx.offered is not checkpoint:
                raise StageError(self.name, self._sink_names[run.owner], RuntimeError(
                    "a TRANSACTIONAL sink did not store the checkpoint it was given "
                    "(its write must call context.checkpoint_for(batch), also for an empty "
                    "batch)"))
            run.stored_seq = checkpoint.seq

    async def _final_commit(self, run: _Run) -> None:
        """Commit what every sink made durable, also after a failure (it is safe)."""
        try:
            await self._commit_if_newer(run)
        except StageError as exc:
            self.log.error("final checkpoint commit failed", error=str(exc))

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
