"""Test stages for the resilience tests: flaky, dead and validating sinks."""

from __future__ import annotations

import random
from typing import Any

from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.checkpoint import Checkpoint, MemoryCheckpointStore
from etlsync.core.errors import DataError
from etlsync.core.stages import Sink, StageContext


class FlakySink(Sink):
    """Fails a write with ``ConnectionResetError`` with probability ``p`` (before writing
    anything); ``dead`` makes every write fail. Writes are all-or-nothing."""

    def __init__(self, p: float = 0.0, seed: int = 0, name: str = "flaky") -> None:
        self.p = p
        self.rng = random.Random(seed)
        self.dead = False
        self.name = name
        self.rows: list[Row] = []
        self.failures = 0
        self.writes = 0
        self.opens = 0
        self.closes = 0

    async def open(self, context: StageContext) -> None:
        self.opens += 1

    async def close(self) -> None:
        self.closes += 1

    async def write(self, batch: Batch) -> None:
        self.writes += 1
        if self.dead or (self.p and self.rng.random() < self.p):
            self.failures += 1
            raise ConnectionResetError("injected: connection reset by peer")
        self.rows.extend(batch.rows)


def row_problem(row: Row) -> str | None:
    """Why a row is dirty, or ``None``: ``id`` must be an int, ``amount`` a finite number
    between 0 and 1e9, ``name`` a str without NUL."""
    if not isinstance(row.get("id"), int) or isinstance(row.get("id"), bool):
        return "id must be an integer"
    amount = row.get("amount")
    if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not (
            0 <= amount <= 1e9):
        return "amount out of range"
    name = row.get("name")
    if not isinstance(name, str) or "\x00" in name:
        return "name must be text without NUL"
    return None


class ValidatingSink(Sink):
    """Validates every row before writing any (all-or-nothing) and raises DataError naming
    the first bad row, like a database rejecting a transaction; stores the checkpoint with
    the rows (``TRANSACTIONAL``)."""

    capabilities = frozenset({Capability.TRANSACTIONAL})

    def __init__(self, name: str = "validating") -> None:
        self.name = name
        self.rows: list[Row] = []
        self.writes = 0
        self.positions: list[Any] = []
        self.checkpoints: list[Checkpoint] = []
        self.store = MemoryCheckpointStore()

    async def open(self, context: StageContext) -> None:
        self.context = context

    async def write(self, batch: Batch) -> None:
        self.writes += 1
        for row in batch.rows:
            problem = row_problem(row)
            if problem is not None:
                raise DataError(problem, row=row)
        checkpoint = self.context.checkpoint_for(batch)
        if checkpoint is not None:  # "in the same transaction" as the rows
            self.positions.append(checkpoint.position)
            self.checkpoints.append(checkpoint)
            await self.store.commit(self.context.pipeline, checkpoint)
        self.rows.extend(batch.rows)

    def checkpoint_store(self) -> MemoryCheckpointStore:
        return self.store
