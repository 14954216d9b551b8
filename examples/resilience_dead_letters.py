"""Resilience example: dirty rows are isolated and dead-lettered, transient failures are
retried, and the dead letters are replayed once fixed.

    python examples/resilience_dead_letters.py [WORKDIR]

Loads orders into a SQLite table whose constraints reject some rows (NULL or negative
amounts). The sink is wrapped in ``Resilient``: a batch that fails because of its data is
bisected, good rows commit, bad rows go to ``dead_letters.jsonl`` with the error. Then the
bad rows are repaired and replayed.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from etlsync import Batch, Pipeline
from etlsync.connectors.sqlite import SqliteSink
from etlsync.resilience import (
    CircuitBreaker,
    JsonlDeadLetterSink,
    Resilient,
    RetryPolicy,
    TransientError,
)
from etlsync.resilience.replay import replay
from etlsync.testing import MemorySource


class Unreliable(SqliteSink):
    """A SQLite sink that fails now and then, as a network database would (demo only)."""

    rng = random.Random(3)

    async def write(self, batch: Batch) -> None:
        if self.rng.random() < 0.2:
            raise TransientError("injected: server busy, try again", retry_after=0.01)
        await super().write(batch)


def orders(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        amount: float | None = round(10 + i * 0.5, 2)
        if i % 97 == 13:
            amount = None  # violates NOT NULL
        elif i % 89 == 7:
            amount = -amount  # violates CHECK (amount >= 0)
        rows.append({"id": i, "customer": f"c{i % 50}", "amount": amount})
    return rows


async def main(workdir: Path) -> dict[str, Any]:
    db, dead = workdir / "shop.db", workdir / "dead_letters.jsonl"
    with sqlite3.connect(db) as conn:
        conn.execute("create table if not exists orders (id integer primary key, "
                     "customer text not null, amount real not null check (amount >= 0))")
    letters = JsonlDeadLetterSink(dead)
    sink = Resilient(
        Unreliable(db, table="orders", create=False),
        retry=RetryPolicy(max_attempts=10, base_delay=0.01),
        breaker=CircuitBreaker(failure_threshold=5, reset_timeout=0.1),
        on_bad_data="dead_letter", dead_letter=letters, max_bad_ratio=0.05)
    summary = await Pipeline(MemorySource(orders(2000), batch_size=250), sinks=[sink],
                             name="orders").run()
    pending = await letters.count(pipeline="orders")
    first = await anext(letters.read())

    def repair(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "amount": abs(row["amount"] or 0.0)}

    replayed = await replay(letters, [SqliteSink(db, table="orders", create=False)],
                            pipeline="orders", fix=repair, name="orders-replay")
    with sqlite3.connect(db) as conn:
        stored = conn.execute("select count(*) from orders").fetchone()[0]
    return {"status": summary.status, "rows_written": stored, "dead_lettered": pending,
            "example_error": f"{first.error_type}: {first.error}", "retries":
            sink.metrics["retries"], "replayed": replayed.rows_written,
            "still_pending": await letters.count(pipeline="orders")}


if __name__ == "__main__":
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    print(json.dumps(asyncio.run(main(where)), indent=2))
