"""Stages for the service tests, named in job files as ``tests.service.helpers:Class``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability
from etlsync.core.stages import Source


class LaggingSource(Source):
    """A CDC-like source that yields one batch, then waits, reporting ``lag_seconds``."""

    capabilities = frozenset({Capability.CDC})

    def __init__(self, lag_seconds: float = 0.0) -> None:
        self.lag_seconds = lag_seconds

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        yield Batch([{"id": 1}], position=1)
        while True:
            await asyncio.sleep(3600)

    def extra_metrics(self) -> dict[str, Any]:
        return {"lag_seconds": self.lag_seconds}
