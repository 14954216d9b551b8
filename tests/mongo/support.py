"""Helpers for the MongoDB tests: a sink that applies change batches to a dict by ``_id``."""

from __future__ import annotations

from typing import Any

from etlsync.core.batch import Batch, Op
from etlsync.core.stages import Sink


class KeyedSink(Sink):
    """Applies batches like an upsert/delete-by-key table: ``table[_id] = row``."""

    name = "keyed"

    def __init__(self) -> None:
        self.tables: dict[str, dict[Any, dict[str, Any]]] = {}
        self.batches: list[Batch] = []

    async def write(self, batch: Batch) -> None:
        self.batches.append(batch)
        table = self.tables.setdefault(batch.stream, {})
        for op, row in batch.iter_changes():
            if op is Op.TRUNCATE:
                table.clear()
            elif op is Op.DELETE:
                table.pop(row["_id"], None)
            else:
                table[row["_id"]] = dict(row)

    def table(self, stream: str) -> dict[Any, dict[str, Any]]:
        return self.tables.get(stream, {})

    @property
    def ops(self) -> list[tuple[str, Op, Any]]:
        return [(b.stream, op, row.get("_id")) for b in self.batches
                for op, row in b.iter_changes()]

