"""Helpers for tests that run ``etlsync serve`` as a real process and kill it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[2] / "src")
TOKEN = "kill-test-token-0123456789"


class ServeProcess:
    def __init__(self, root: Path, instance: str) -> None:
        env = {**os.environ, "PYTHONPATH": SRC, "ETLSYNC_SERVE_TOKEN": TOKEN}
        self.log = root / f"serve-{instance}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "etlsync.cli", "serve", str(root), "--instance", instance],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        self.port = 0

    async def ready(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"HTTP on 127\.0\.0\.1:(\d+)", self.log.read_text())
            if m:
                self.port = int(m.group(1))
                return self.port
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.log.read_text()}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"serve not ready: {self.log.read_text()}")

    async def trigger(self, job: str) -> dict[str, Any]:
        import aiohttp

        async with aiohttp.ClientSession() as http, http.post(
                f"http://127.0.0.1:{self.port}/jobs/{job}/runs",
                headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 202, await r.text()
            run: dict[str, Any] = (await r.json())["run"]
            return run

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


async def wait_for(predicate: Any, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def history(root: Path) -> list[Any]:
    """The project's runs, oldest first, read from its state database."""
    from etlsync.service import load_project

    store = load_project(root, validate_jobs=False).state_store()
    await store.open()
    try:
        return list(reversed(await store.runs()))
    finally:
        await store.close()
