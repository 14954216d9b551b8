"""Routing batches to one sink per stream: multi-table snapshots and CDC into per-table sinks."""

from __future__ import annotations

from collections.abc import Callable

from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability
from etlsync.core.checkpoint import CheckpointStore
from etlsync.core.stages import Sink, StageContext


class RoutingSink(Sink):
    """Sends each batch to the sink of its stream, made on first use by ``make_sink(stream)``.

    Streams are e.g. ``"public.orders"`` for PostgreSQL CDC or ``"shop.orders"`` for the binlog.
    Batches reach each child in source order, one at a time, so child sinks keep their
    contracts; every child gets the pipeline's :class:`StageContext`. An empty batch of no
    stream (an idle checkpoint, the end of a pass) goes to every child that exists.

    :param make_sink: builds the sink for a stream (not opened: the router opens it).
    :param name: the stage name.
    :param checkpoint_store: for children that are ``TRANSACTIONAL`` and write one state table
        (the same target database): makes the router ``TRANSACTIONAL`` with a new store
        from this factory, so the pipeline's checkpoint is stored in the children's own
        transactions (exactly-once across tables).
    """

    def __init__(self, make_sink: Callable[[str], Sink], name: str = "router", *,
                 checkpoint_store: Callable[[], CheckpointStore] | None = None) -> None:
        self.make_sink = make_sink
        self.name = name
        self.sinks: dict[str, Sink] = {}
        self._store_factory = checkpoint_store
        self.capabilities = frozenset({Capability.TRANSACTIONAL} if checkpoint_store else ())
        self._context: StageContext | None = None

    def checkpoint_store(self) -> CheckpointStore | None:
        return self._store_factory() if self._store_factory is not None else None

    async def open(self, context: StageContext) -> None:
        self._context = context

    async def _child(self, stream: str) -> Sink:
        sink = self.sinks.get(stream)
        if sink is None:
            if self._context is None:
                raise RuntimeError(f"sink {self.name!r} is not open")
            sink = self.make_sink(stream)
            await sink.open(self._context)
            self.sinks[stream] = sink
        return sink

    async def write(self, batch: Batch) -> None:
        if len(batch) or batch.stream:
            await (await self._child(batch.stream)).write(batch)
            return
        children = list(self.sinks.values())
        if batch.end_of_pass:
            for sink in children:
                await sink.write(batch)
        elif children:
            await children[0].write(batch)
        if not children and self._context is not None:
            checkpoint = self._context.checkpoint_for(batch)
            store = self.checkpoint_store() if checkpoint is not None else None
            if store is not None and checkpoint is not None:
                try:
                    await store.commit(self._context.pipeline, checkpoint)
                finally:
                    await store.close()

    async def close(self) -> None:
        errors: list[BaseException] = []
        for sink in self.sinks.values():
            try:
                await sink.close()
            except Exception as exc:  # noqa: BLE001 - close every child, then report
                errors.append(exc)
        if errors:
            raise errors[0]
