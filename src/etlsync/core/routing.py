"""Routing batches to one sink per stream: multi-table snapshots and CDC into per-table sinks."""

from __future__ import annotations

from collections.abc import Callable

from etlsync.core.batch import Batch
from etlsync.core.stages import Sink, StageContext


class RoutingSink(Sink):
    """Sends each batch to the sink of its stream, made on first use by ``make_sink(stream)``.

    Streams are e.g. ``"public.orders"`` for PostgreSQL CDC or ``"shop.orders"`` for the binlog.
    Batches reach each child in source order, one at a time, so child sinks keep their
    contracts; every child gets the pipeline's :class:`StageContext`, so transactional
    children record ``context.position_after(batch)`` in the batch's own transaction and
    the pipeline stays exactly-once across tables.

    :param make_sink: builds the sink for a stream (not opened: the router opens it).
    :param name: the stage name.
    """

    def __init__(self, make_sink: Callable[[str], Sink], name: str = "router") -> None:
        self.make_sink = make_sink
        self.name = name
        self.sinks: dict[str, Sink] = {}
        self._context: StageContext | None = None

    async def open(self, context: StageContext) -> None:
        self._context = context

    async def write(self, batch: Batch) -> None:
        sink = self.sinks.get(batch.stream)
        if sink is None:
            if self._context is None:
                raise RuntimeError(f"sink {self.name!r} is not open")
            sink = self.make_sink(batch.stream)
            await sink.open(self._context)
            self.sinks[batch.stream] = sink
        await sink.write(batch)

    async def close(self) -> None:
        errors: list[BaseException] = []
        for sink in self.sinks.values():
            try:
                await sink.close()
            except Exception as exc:  # noqa: BLE001 - close every child, then report
                errors.append(exc)
        if errors:
            raise errors[0]
