"""End to end: a collection -> SQLite (upsert on _id, checkpoint in the target) under
concurrent inserts/updates/deletes, with the pipeline process killed by SIGKILL at random
points; afterwards the table equals the collection. Runs examples/mongo_to_sqlite.py."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from etlsync.connectors.mongo.convert import to_row

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mongo_to_sqlite.py"


async def _writer(coll: Any, stop: asyncio.Event, rng: random.Random, next_id: int) -> int:
    ops = 0
    while not stop.is_set():
        kind = rng.random()
        key = rng.randrange(next_id)
        if kind < 0.4:
            await coll.insert_one({"_id": next_id, "v": 0, "name": f"n{next_id}",
                                   "nested": {"a": next_id, "tags": ["x"]}})
            next_id += 1
        elif kind < 0.8:
            await coll.update_one({"_id": key}, {"$inc": {"v": 1}, "$set": {"nested.a": -key}})
        elif kind < 0.9:
            await coll.replace_one({"_id": key}, {"v": 100, "name": "replaced",
                                                  "nested": {"a": 0, "tags": []}})
        else:
            await coll.delete_one({"_id": key})
        ops += 1
        if ops % 20 == 0:
            await asyncio.sleep(0.005)
    return ops


async def _run_example(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


def _state(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        with sqlite3.connect(path, timeout=5) as conn:
            row = conn.execute('SELECT position FROM "_etlsync_state"').fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, str) and v[:1] in "[{":
            v = json.loads(v)
        if v is not None:
            out[k] = v
    return out


async def test_collection_to_sqlite_survives_kill_9_under_concurrent_writes(
        mongo_uri: str, mongo_db: Any, tmp_path: Path) -> None:
    rng = random.Random(20261122)
    coll = mongo_db.orders
    seed = 6000
    await coll.insert_many([{"_id": i, "v": 0, "name": f"n{i}", "nested": {"a": i, "tags": []}}
                            for i in range(seed)])
    db_path = tmp_path / "target.db"
    env = dict(os.environ, ETLSYNC_MONGO_URI=mongo_uri, PYTHONPATH=str(ROOT / "src"))
    args = (mongo_db.name, "orders", str(db_path), "--table", "orders", "--chunk-size", "1000")
    stop = asyncio.Event()
    writer = asyncio.create_task(_writer(coll, stop, rng, seed))
    phases: list[str] = []
    try:
        for i in range(5):
            proc = await _run_example(env, *args)
            before = _state(db_path)
            for _ in range(300):  # wait until this run has committed something
                await asyncio.sleep(0.05)
                if _state(db_path) != before or proc.returncode is not None:
                    break
            await asyncio.sleep(rng.uniform(0.05, 0.3) if i == 0 else rng.uniform(0.1, 1.0))
            if proc.returncode is None:
                proc.kill()  # SIGKILL: no cleanup, no final checkpoint
            await proc.wait()
            assert proc.returncode == -9, proc.returncode
            state = _state(db_path)
            if state:
                phases.append(json.loads(state)["position"]["phase"])
    finally:
        stop.set()
        ops = await writer
    assert ops > 100 and len(phases) == 5
    assert "snapshot" in phases and "stream" in phases, phases
    proc = await _run_example(env, *args, "--idle-timeout", "1.5")
    _out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]

    expected = {d["_id"]: _normalise(to_row(d, "json")) async for d in coll.find()}
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        got = {r["_id"]: _normalise(dict(r)) for r in conn.execute('SELECT * FROM "orders"')}
    assert set(got) == set(expected)
    assert got == expected
