"""Graceful stop on SIGINT/SIGTERM in a real process, and the README tour runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FOLLOWING_PIPELINE = """
import asyncio, json, sys
from etlsync import Pipeline, MemoryCheckpointStore
from etlsync.testing import MemorySource, CollectingSink

async def main():
    store = MemoryCheckpointStore()
    sink = CollectingSink(delay=0.001)
    source = MemorySource([{"id": i} for i in range(5000)], 100, follow=True)
    pipeline = Pipeline(source, [], sink, name="sig", checkpoint_store=store)
    task = asyncio.create_task(pipeline.run())
    while len(sink.rows) < 5000:
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    summary = await task
    print(json.dumps({"status": summary.status, "written": len(sink.rows),
                      "committed": (await store.load("sig")).position, "acked": source.committed[-1]}))

asyncio.run(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_drains_commits_and_returns_a_summary(sig: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-c", FOLLOWING_PIPELINE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"status": "stopped", "written": 5000, "committed": 5000, "acked": 5000}


def test_readme_tour_example_runs() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "tour.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tour: completed: 10000 rows read, 9989 written" in proc.stdout
    assert "committed position: 10000" in proc.stdout
