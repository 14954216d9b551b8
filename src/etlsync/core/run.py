"""One run of a pipeline: its tasks (source, transform, one per sink, committer) and the
state they share (tracker, checkpoint store and owner, gates, counters)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability, has
from etlsync.core.channel import Channel, ChannelClosed
from etlsync.core.checkpoint import Checkpoint, CheckpointStore
from etlsync.core.errors import StageError
from etlsync.core.metrics import now
from etlsync.core.observe import EventKind
from etlsync.core.stages import Operator, OperatorOutput, Sink, Source, StageContext
from etlsync.core.tracker import CheckpointTracker, Ticket


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


class Host(Protocol):
    """What a run needs of its :class:`~etlsync.core.pipeline.Pipeline`."""

    name: str
    source: Source
    operators: list[Operator]
    sinks: list[Sink]
    source_name: str
    operator_names: list[str]
    sink_names: list[str]
    stateful: list[tuple[str, Operator]]
    channel_batches: int
    channel_rows: int
    stop_requested: bool
    preview_rows: int | None
    state_interval: StateInterval
    log: Any

    def emit(self, kind: EventKind, stage: str = "", **fields: Any) -> None: ...

    async def guard(self, stage: str, awaitable: Any) -> Any: ...

    def stop(self) -> None: ...


def _as_list(out: OperatorOutput) -> list[Batch]:
    if out is None:
        return []
    if isinstance(out, Batch):
        return [out]
    return list(out)


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


class Run:
    """The engine of one :meth:`Pipeline.run`.

    :param owner: the index of the sink that owns the checkpoint store (writes it in its own
        transactions), or ``None``: the runner commits to ``store`` itself.
    """

    def __init__(self, pipeline: Host, store: CheckpointStore, owner: int | None,
                 resume: Checkpoint | None) -> None:
        self.p = pipeline
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
        self.unsnapshotted = 0
        """Source batches since the last state snapshot (:class:`StateInterval`)."""
        self.snapshot_at = time.monotonic()
        self.gates: dict[int, _Gate] = {}
        """With an owning sink and others: per batch, the others' writes the owner waits for."""
        self.channels: dict[str, Channel[Batch]] = {}
        """The channels, keyed by the stage that reads them."""
        self.stages_running = 0
        self.source_task: asyncio.Task[None] | None = None

    async def stages(self, position: Any, resume: Checkpoint | None) -> None:
        src_ch: Channel[Batch] = Channel(self.p.channel_batches, self.p.channel_rows)
        sink_chs = [Channel[Batch](self.p.channel_batches, self.p.channel_rows) for _ in self.p.sinks]
        self.channels = {"transform": src_ch, **dict(zip(self.p.sink_names, sink_chs, strict=True))}
        if self.p.operators:
            self.channels[self.p.operator_names[0]] = self.channels.pop("transform")
        opened: list[Sink] = []
        ops_opened: list[Operator] = []
        try:
            for name, op in zip(self.p.operator_names, self.p.operators, strict=True):
                ctx = StageContext(self.p.name, name, self.p.log.bind(stage=name), None,
                                   resume=resume)
                ctx.preview = self.p.preview_rows is not None
                await self.p.guard(name, op.open(ctx))
                ops_opened.append(op)
            for i, (name, sink) in enumerate(zip(self.p.sink_names, self.p.sinks, strict=True)):
                ctx = StageContext(self.p.name, name, self.p.log.bind(stage=name), self.tracker,
                                   resume=resume, owns_checkpoint=i == self.owner)
                self.contexts.append(ctx)
                self.p.emit(EventKind.STAGE, name, state="open")
                await self.p.guard(name, sink.open(ctx))
                opened.append(sink)
            try:
                async with asyncio.TaskGroup() as tg:
                    self.stages_running = 2 + len(self.p.sinks)

                    def finished(_: object) -> None:
                        self.stages_running -= 1
                        self.wakeup.set()

                    self.source_task = tg.create_task(self._source_stage(position, src_ch))
                    self.source_task.add_done_callback(finished)
                    tg.create_task(self._transform_stage(src_ch, sink_chs)
                                   ).add_done_callback(finished)
                    for i, (name, sink, ch) in enumerate(
                            zip(self.p.sink_names, self.p.sinks, sink_chs, strict=True)):
                        tg.create_task(self._sink_stage(i, name, sink, ch)
                                       ).add_done_callback(finished)
                    tg.create_task(self._committer())
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
                    await self._final_commit()
        finally:
            for name, sink in reversed(list(zip(self.p.sink_names, opened, strict=False))):
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await sink.close()
                self.p.emit(EventKind.STAGE, name, state="closed")
            for op in reversed(ops_opened):
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await op.close()

    async def _source_stage(self, position: Any, out: Channel[Batch]) -> None:
        name = self.p.source_name
        agen = self.p.source.read(position)
        exhausted = False
        self.p.emit(EventKind.STAGE, name, state="running")
        try:
            t0 = now()
            while not self.p.stop_requested:
                try:
                    batch = await agen.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    break
                except asyncio.CancelledError:
                    if self.p.stop_requested:
                        return
                    raise
                except Exception as exc:
                    self.p.emit(EventKind.ERROR, name, error=exc)
                    raise StageError(self.p.name, name, exc) from exc
                if not await self._send_from_source(batch, out, t0):
                    return
                t0 = now()
            if exhausted and not self.last_end_of_pass and not has(self.p.source, Capability.CDC):
                # a finite source that does not mark its passes: the kernel closes the pass
                await self._send_from_source(Batch([], end_of_pass=True, position=None),
                                             out, now())
        finally:
            out.close()
            self.p.emit(EventKind.STAGE, name, state="finished")
            with contextlib.suppress(Exception):
                await agen.aclose()  # type: ignore[attr-defined]

    async def _send_from_source(self, batch: Batch, out: Channel[Batch],
                                t0: float) -> bool:
        ticket = self.tracker.issue(batch.position, batch.end_of_pass)
        ticket.retain()
        batch.tickets = (ticket,)
        self.last_end_of_pass = batch.end_of_pass
        if batch.position is not None:
            self.last_position = batch.position
            self.last_positioned = True
        elif not batch.end_of_pass:
            self.last_positioned = False
        self.p.emit(EventKind.BATCH_READ, self.p.source_name, rows=len(batch),
                   seconds=now() - t0, position=batch.position)
        try:
            await out.send(batch)
        except asyncio.CancelledError:
            if self.p.stop_requested:
                return False
            raise
        return True

    async def _transform_stage(self, inp: Channel[Batch], outs: list[Channel[Batch]]) -> None:
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
                    if self.p.stateful:
                        self._snapshot_onto(ticket, batch, produced)
                finally:
                    ticket.release()
                for out_batch in produced:
                    await self._fan_out(out_batch, outs, fan)
                if self.p.preview_rows is not None:
                    previewed += sum(map(len, produced))
                    if previewed >= self.p.preview_rows:
                        self.p.stop()  # a dry run reads no further than it shows
                        return
            await self._flush_operators(outs, fan)
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
        return {key: op.snapshot_state() for key, op in self.p.stateful}

    def _snapshot_onto(self, ticket: Ticket, batch: Batch, produced: list[Batch]) -> None:
        """Put the operators' state on ``ticket``, or mark it as no resume point
        (:class:`StateInterval`)."""
        policy = self.p.state_interval
        self.unsnapshotted += 1
        due = (policy.every_batch or batch.end_of_pass or self.p.stop_requested
               or self.unsnapshotted >= policy.batches
               or (policy.seconds is not None
                   and time.monotonic() - self.snapshot_at >= policy.seconds)
               or (policy.on_output and any(len(b) for b in produced)))
        if not due:
            ticket.resume = False
            return
        if (ticket.position is None and batch.end_of_pass and self.unsnapshotted > 1
                and self.last_positioned):
            # the kernel's end-of-pass marker after batches without a snapshot: the pass
            # ends where the last batch did, with the state this snapshot takes
            ticket.position = self.last_position
        ticket.state = self._snapshot()
        self.unsnapshotted, self.snapshot_at = 0, time.monotonic()

    async def _flush_operators(self, outs: list[Channel[Batch]], fan: int) -> None:
        ticket: Ticket | None = None
        stopping = self.p.stop_requested
        if self.p.stateful and (not stopping or (self.unsnapshotted and self.last_positioned)):
            # end of the stream: flush() output gets a ticket of its own; on a stop, one
            # carrying the state of batches that got no snapshot (StateInterval)
            ticket = self.tracker.issue(self.last_position, self.last_end_of_pass)
            ticket.retain()
        try:
            for i in range(len(self.p.operators)):
                name, op = self.p.operator_names[i], self.p.operators[i]
                if stopping and has(op, Capability.STATEFUL):
                    continue  # its state is in the checkpoint: the next run goes on from it
                with self.tracker.deferred():
                    flushed = _as_list(await self.p.guard(name, op.flush()))
                    for out in flushed:
                        if not out.tickets and ticket is not None:
                            out.tickets = (ticket,)
                        out.retain()
                for out_batch in await self._apply(i + 1, flushed):
                    await self._fan_out(out_batch, outs, fan)
            if ticket is not None:
                ticket.state = self._snapshot()
                self.unsnapshotted = 0
        finally:
            if ticket is not None:
                ticket.release()

    async def _fan_out(self, batch: Batch, outs: list[Channel[Batch]], fan: int) -> None:
        if fan > 1:
            batch.retain(fan - 1)
            if self.owner is not None:
                self.gates[id(batch)] = _Gate(fan - 1)
        for ch in outs:
            await ch.send(batch)

    async def _apply(self, start: int, batches: list[Batch]) -> list[Batch]:
        """Run ``batches`` through operators ``start..``; move ticket holds to the outputs."""
        tracker = self.tracker
        for i in range(start, len(self.p.operators)):
            op, name = self.p.operators[i], self.p.operator_names[i]
            produced: list[Batch] = []
            for batch in batches:
                t0 = now()
                rows_out = 0
                with tracker.deferred():
                    outs = _as_list(await self.p.guard(name, op.process(batch)))
                    for out in outs:
                        if not out.tickets:
                            out.tickets = batch.tickets
                        out.retain()
                        rows_out += len(out)
                    batch.release()
                self.p.emit(EventKind.BATCH_PROCESSED, name, rows=len(batch), rows_out=rows_out,
                           batches=len(outs), seconds=now() - t0)
                produced.extend(outs)
            batches = produced
            if not batches:
                break
        return batches

    async def _sink_stage(self, index: int, name: str, sink: Sink, inp: Channel[Batch]) -> None:
        ctx = self.contexts[index]
        owner = index == self.owner
        self.p.emit(EventKind.STAGE, name, state="running")
        while True:
            try:
                batch = await inp.receive()
            except ChannelClosed:
                self.p.emit(EventKind.STAGE, name, state="finished")
                return
            if owner:
                # the owning sink writes last, so the checkpoint in its transaction is the
                # one its batch completes: exactly-once for it, at-least-once for the others
                gate = self.gates.get(id(batch))
                if gate is not None:
                    await gate.wait()
                    del self.gates[id(batch)]
                t0 = now()
                async with self.lock:
                    ctx.offered = None
                    await self.p.guard(name, sink.write(batch))
                    if ctx.offered is not None:
                        self.stored_seq = max(self.stored_seq, ctx.offered.seq)
            else:
                t0 = now()
                gate = self.gates.get(id(batch))
                await self.p.guard(name, sink.write(batch))
                if gate is not None:
                    gate.done_one()
            self.p.emit(EventKind.BATCH_WRITTEN, name, rows=len(batch), seconds=now() - t0,
                       position=batch.position)
            batch.release()

    async def _committer(self) -> None:
        """Commit the committable checkpoint whenever it advances; commits coalesce while one
        is in flight. Ends once every stage has finished."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            await self._commit_if_newer()
            if self.stages_running == 0:
                return

    async def _commit_if_newer(self) -> None:
        tracker = self.tracker
        checkpoint = tracker.committable
        if checkpoint is None or tracker.version == self.version:
            return
        version, t0 = tracker.version, now()
        if self.owner is None:
            await self.p.guard("checkpoint", self.store.commit(self.p.name, checkpoint))
        else:
            await self._store_through_owner(checkpoint)
        self.version, self.position, self.commits = version, checkpoint.position, self.commits + 1
        self.p.emit(EventKind.COMMIT, "checkpoint", position=checkpoint.position,
                   seconds=now() - t0)
        await self.p.guard(self.p.source_name, self.p.source.on_commit(checkpoint.position))

    async def _store_through_owner(self, checkpoint: Checkpoint) -> None:
        """The owning sink stores every checkpoint: one its writes did not carry yet (data
        dropped by operators, several sinks) goes in a transaction of its own."""
        assert self.owner is not None
        sink, ctx = self.p.sinks[self.owner], self.contexts[self.owner]
        async with self.lock:
            if self.stored_seq >= checkpoint.seq:
                return
            ctx.forced, ctx.offered = checkpoint, None
            try:
                await self.p.guard(self.p.sink_names[self.owner], sink.write(Batch([])))
            finally:
                ctx.forced = None
            if ctx.offered is not checkpoint:
                raise StageError(self.p.name, self.p.sink_names[self.owner], RuntimeError(
                    "a TRANSACTIONAL sink did not store the checkpoint it was given "
                    "(its write must call context.checkpoint_for(batch), also for an empty "
                    "batch)"))
            self.stored_seq = checkpoint.seq

    async def _final_commit(self) -> None:
        """Commit what every sink made durable, also after a failure (it is safe)."""
        try:
            await self._commit_if_newer()
        except StageError as exc:
            self.p.log.error("final checkpoint commit failed", error=str(exc))


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
