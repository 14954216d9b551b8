"""Live events of a running service, for dashboards and the web console.

``service.events.subscribe(callback)`` calls ``callback(event)`` for every event (inline:
keep it cheap); ``async for event in service.events.stream():`` reads them from a bounded
queue (the oldest are dropped when a reader falls behind, and it is told how many).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from etlsync.log import get_logger
from etlsync.service.state import RunRecord, iso

log = get_logger(component="events")


@dataclass(frozen=True)
class ServiceEvent:
    kind: str
    """``run_queued``, ``run_started``, ``run_progress``, ``run_finished``, ``alert``,
    ``rollback``, ``dropped`` (a stream reader fell behind: ``detail['count']`` events)."""
    at: float
    run: RunRecord | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": iso(self.at),
                "run": None if self.run is None else self.run.to_dict(), "detail": self.detail}


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Callable[[ServiceEvent], None]] = []

    def subscribe(self, callback: Callable[[ServiceEvent], None]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)
        return unsubscribe

    def publish(self, event: ServiceEvent) -> None:
        for callback in tuple(self._subscribers):
            try:
                callback(event)
            except Exception as exc:  # noqa: BLE001 - a subscriber never fails the service
                log.error("event subscriber failed: unsubscribed", error=str(exc))
                with contextlib.suppress(ValueError):
                    self._subscribers.remove(callback)

    async def stream(self, maxsize: int = 1000) -> AsyncIterator[ServiceEvent]:
        queue: asyncio.Queue[ServiceEvent] = asyncio.Queue(maxsize)
        dropped = 0

        def put(event: ServiceEvent) -> None:
            nonlocal dropped
            if queue.full():
                queue.get_nowait()
                dropped += 1
            queue.put_nowait(event)
        unsubscribe = self.subscribe(put)
        try:
            while True:
                event = await queue.get()
                if dropped:
                    yield ServiceEvent("dropped", event.at, None, {"count": dropped})
                    dropped = 0
                yield event
        finally:
            unsubscribe()
