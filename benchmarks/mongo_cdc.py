"""MongoDB change-stream CDC: events/s through etlsync into a null sink vs a bare PyMongo
``watch()`` loop, on the same server and the same events, in one run.

The parent starts a SecantusDB server (or uses ``--uri``), writes N inserts (plus a share of
updates and deletes) once, and records the resume token from before them; then every variant
reads exactly those N events from that token, each in its own process.

    python benchmarks/mongo_cdc.py --rows 100000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_result, parse_args, report, run_variants

VARIANTS = ["pymongo_watch", "etlsync_change_stream", "etlsync_change_stream_flatten"]
BATCH = 1000


def _extra(parser: Any) -> None:
    parser.add_argument("--uri", help="an existing server (default: start SecantusDB)")
    parser.add_argument("--token", help=argparse.SUPPRESS)


async def _load(uri: str, db: str, rows: int) -> dict[str, Any]:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(uri)
    coll = client[db]["events"]
    await coll.drop()
    async with await coll.watch() as cs:
        token = cs.resume_token
    inserts = rows * 8 // 10
    upd = rows - inserts
    step = 5000
    for i in range(0, inserts, step):
        await coll.insert_many([{"_id": j, "v": j, "name": f"customer {j}",
                                 "address": {"city": "Berlin", "zip": str(10000 + j % 900)},
                                 "tags": ["a", "b"], "amount": j * 1.5}
                                for j in range(i, min(inserts, i + step))])
    for j in range(upd // 2):
        await coll.update_one({"_id": j}, {"$set": {"v": -j - 1}})
    for j in range(upd - upd // 2):
        await coll.delete_one({"_id": inserts - 1 - j})
    await client.close()
    return dict(token)


async def _pymongo(uri: str, db: str, rows: int, token: dict[str, Any]) -> float:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(uri)
    coll = client[db]["events"]
    n = 0
    t0 = time.perf_counter()
    async with await coll.watch(resume_after=token, full_document="updateLookup",
                                batch_size=BATCH) as stream:
        async for _change in stream:
            n += 1
            if n >= rows:
                break
    seconds = time.perf_counter() - t0
    await client.close()
    return seconds


async def _etlsync(uri: str, db: str, rows: int, token: dict[str, Any], flatten: Any) -> float:
    from etlsync.connectors.mongo import MongoChangeStreamSource
    from etlsync.core.batch import Batch
    from etlsync.core.checkpoint import MemoryCheckpointStore
    from etlsync.core.pipeline import Pipeline
    from etlsync.core.stages import Sink

    class NullSink(Sink):
        name = "null"

        def __init__(self) -> None:
            self.n = 0
            self.pipeline: Pipeline | None = None

        async def write(self, batch: Batch) -> None:
            self.n += len(batch.rows)
            if self.n >= rows and self.pipeline is not None:
                self.pipeline.stop()

    store = MemoryCheckpointStore()
    source = MongoChangeStreamSource(uri, database=db, collections="events", flatten=flatten,
                                     batch_size=BATCH)
    await store.commit("bench", {"kind": "change_stream", "phase": "stream", "resume": token})
    sink = NullSink()
    pipeline = Pipeline(source, [], sink, name="bench", checkpoint_store=store)
    sink.pipeline = pipeline
    t0 = time.perf_counter()
    await pipeline.run(handle_signals=False)
    seconds = time.perf_counter() - t0
    if sink.n < rows:
        raise RuntimeError(f"etlsync read {sink.n} of {rows} events")
    return seconds


def _child(args: Any) -> None:
    info = json.loads(args.token)
    uri, db, token = info["uri"], info["db"], info["token"]
    if args.variant == "pymongo_watch":
        seconds = asyncio.run(_pymongo(uri, db, args.rows, token))
    elif args.variant == "etlsync_change_stream":
        seconds = asyncio.run(_etlsync(uri, db, args.rows, token, None))
    else:
        seconds = asyncio.run(_etlsync(uri, db, args.rows, token, "dotted"))
    child_result(args.variant, args.rows, seconds)


def _start_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("secantusd-py") or "secantusd-py"
    proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                             ":memory:", "--log-level", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    from pymongo import MongoClient

    for _ in range(300):
        try:
            MongoClient(uri, serverSelectionTimeoutMS=200).admin.command("ping")
            return proc, uri
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("SecantusDB did not start")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], 100_000, _extra)
    if args.variant:
        _child(args)
        return
    proc, uri = (None, args.uri) if args.uri else _start_server()
    try:
        db = f"bench_{os.getpid()}"
        t0 = time.perf_counter()
        token = asyncio.run(_load(uri, db, args.rows))
        load_s = time.perf_counter() - t0
        info = json.dumps({"uri": uri, "db": db, "token": token})
        results = run_variants(__file__, VARIANTS, args.rows, args.repeat,
                               extra_args=["--token", info])
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    base = results.get("pymongo_watch", {})
    for r in results.values():
        if "error" not in r and base.get("rows_per_s"):
            r["ratio_vs_pymongo_watch"] = round(r["rows_per_s"] / base["rows_per_s"], 3)
        r["load_seconds"] = round(load_s, 2)
    report(results, args.json)


if __name__ == "__main__":
    main()
