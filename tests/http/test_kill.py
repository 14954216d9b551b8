"""kill -9: examples/rest_to_sqlite.py against the fake API (20% injected server errors, a
request budget), killed with SIGKILL several times; the final table holds every record once
with its newest values, and the server never saw a request over the budget."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import sys
from pathlib import Path

from tests.http.fakes.base import serve
from tests.http.fakes.generic import make_app, make_orders

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rest_to_sqlite.py"


def _position(db: Path) -> str | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute('SELECT position FROM "_etlsync_state"').fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


async def test_rest_to_sqlite_survives_kill_9(tmp_path: Path) -> None:
    rng = random.Random(18)
    orders = make_orders(6000)
    app = make_app(orders, page_size=50, limit=40, period=1.0, fault_rate=0.2, seed=5)
    db = tmp_path / "target.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    async with serve(app) as url:
        args = (str(EXAMPLE), url, str(db), "--rate", "40", "--page-size", "50")
        kills = 0
        for i in range(4):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *args, env=env, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            before = _position(db)
            for _ in range(400):
                await asyncio.sleep(0.02)
                if _position(db) != before or proc.returncode is not None:
                    break
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            if proc.returncode is None:
                proc.kill()
                kills += 1
            await proc.wait()
            # a new process knows nothing of the requests the killed one sent in the last
            # window: restart after one budget period, as a supervisor's restart delay would
            await asyncio.sleep(1.0)
            if i == 1:
                # changes between runs, at the end of the order (offset pagination over rows
                # that move would skip rows in any client: see docs/connectors/http.md)
                orders_map = app["orders"]
                orders_map[6000]["amount"] = -7
                orders_map[6000]["updated_at"] = "2024-01-01T23:59:59Z"
                orders_map[99999] = {"id": 99999, "customer": "late", "amount": 1,
                                     "updated_at": "2024-01-01T23:59:59Z", "lines": 0}
        assert kills >= 3
        final = await asyncio.create_subprocess_exec(
            sys.executable, *args, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _out, err = await asyncio.wait_for(final.communicate(), 180)
        assert final.returncode == 0, err.decode()[-2000:]
    with sqlite3.connect(db) as conn:
        got = {r[0]: (r[1], r[2]) for r in conn.execute(
            'SELECT id, amount, updated_at FROM "orders"')}
        state = json.loads(conn.execute('SELECT position FROM "_etlsync_state"').fetchone()[0])
    expected = {o["id"]: (o["amount"], o["updated_at"]) for o in app["orders"].values()}
    assert got == expected
    assert state["pass_open"] is False
    assert app["enforcer"].over_budget == 0
    assert app["faults"].injected > 10
    assert sum(app["served"].values()) > len(expected)  # pages were re-read after kills
