"""Runs that change a table in every way a SQL sink can, for the journal tests of each
family: each case writes some batches, then the run is reverted and the table must equal
what it was before."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from etlsync.core.batch import Batch, Op
from etlsync.core.capabilities import Capability
from etlsync.core.pipeline import Pipeline
from etlsync.core.stages import Sink, Source


class Batches(Source):
    """Yields the given batches (positions 1, 2, ...) as one pass: every run starts over."""

    capabilities = frozenset({Capability.PASSES})

    def __init__(self, batches: Sequence[Batch]) -> None:
        self.batches = list(batches)

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        start = int(position or 0)
        for i, b in enumerate(self.batches[start:], start + 1):
            b.position = i
            yield b
        yield Batch([], position=len(self.batches), end_of_pass=True)


def changes(rows: list[dict[str, Any]], ops: list[str],
            before: list[dict[str, Any] | None] | None = None) -> Batch:
    return Batch(rows, ops=[Op(o) for o in ops], before=before)


SEED = [{"id": i, "v": f"v{i}", "n": i * 1.5} for i in range(1, 6)]

CASES: dict[str, list[Batch]] = {
    "upsert new and old keys": [Batch([{"id": 3, "v": "x", "n": 0.1}, {"id": 9, "v": "new",
                                                                        "n": None}]),
                                Batch([{"id": 3, "v": "y", "n": 0.2}])],
    "updates, deletes and a moved key": [
        changes([{"id": 1, "v": "u1", "n": 1.0}, {"id": 2}, {"id": 7, "v": "moved", "n": 4.5}],
                ["update", "delete", "update"], [None, None, {"id": 4, "v": "v4", "n": 6.0}])],
    "truncate then inserts": [changes([{}, {"id": 1, "v": "again", "n": 0.0}],
                                      ["truncate", "insert"]),
                              Batch([{"id": 2, "v": "two", "n": 2.0}])],
    "a new column": [Batch([{"id": 1, "v": "c", "n": 1.0, "extra": "e"},
                            {"id": 10, "v": "d", "n": 2.0, "extra": "f"}])],
}


async def run(sink: Sink, batches: Sequence[Batch], name: str, run_id: str | None) -> None:
    if run_id is not None:
        sink.journal(run_id)  # type: ignore[attr-defined]
    await Pipeline(Batches(batches), [], sink, name=name).run()
