"""A REST API's orders into SQLite, incrementally and exactly-once, under a request budget.

    python examples/rest_to_sqlite.py BASE_URL DB [--rate N] [--page-size N]

Reads ``BASE_URL/orders`` (offset pagination, ``updated_since`` as the incremental start
parameter, retries and a circuit breaker from etlsync.resilience) into the ``orders`` table
of DB, upserting on ``id``. The checkpoint (the page reached and the watermark) is written
in the same SQLite transaction as each page, so a run killed at any point resumes at the
page it stopped at: nothing lost, nothing applied twice. The token comes from
``$EXAMPLE_API_TOKEN`` when set (never printed).

tests/http/test_kill.py runs it against the fake API and kills it with SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from etlsync import Pipeline
from etlsync.connectors.http import RestSource
from etlsync.connectors.sqlite import SqliteSink


def source(base_url: str, rate: int, page_size: int) -> RestSource:
    client: dict[str, Any] = {
        "base_url": base_url,
        "paginator": {"type": "offset", "limit": page_size, "total_path": "total"},
        "budget": {"call_limit": rate, "period": 1.0},
        "retry": {"base_delay": 0.02, "max_delay": 1.0, "max_attempts": 20},
    }
    if os.environ.get("EXAMPLE_API_TOKEN"):
        client["auth"] = {"type": "bearer", "token": {"env": "EXAMPLE_API_TOKEN"}}
    return RestSource(client, [{
        "name": "orders", "primary_key": "id", "endpoint": {
            "path": "orders", "data_selector": "data",
            "incremental": {"cursor_path": "updated_at", "start_param": "updated_since"}}}])


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("base_url")
    ap.add_argument("db")
    ap.add_argument("--rate", type=int, default=50, help="requests per second at most")
    ap.add_argument("--page-size", type=int, default=50)
    args = ap.parse_args()
    sink = SqliteSink(args.db, table="orders", write_mode="upsert", primary_key=["id"])
    summary = await Pipeline(source(args.base_url, args.rate, args.page_size), [], [sink],
                             name="orders").run()
    print(f"read {summary.rows_read} rows")


if __name__ == "__main__":
    asyncio.run(main())
