"""SerialThread: a call queued after a cancelled one waits for it (no concurrent driver use)."""

from __future__ import annotations

import asyncio
import threading
import time

from etlsync.core.serial import SerialThread


async def test_a_cancelled_call_finishes_before_the_next_starts() -> None:
    serial = SerialThread("test")
    events: list[str] = []
    active = threading.Lock()

    def slow() -> None:
        assert active.acquire(blocking=False), "two calls ran at once"
        events.append("slow start")
        time.sleep(0.2)
        events.append("slow end")
        active.release()

    def quick() -> str:
        assert active.acquire(blocking=False), "two calls ran at once"
        events.append("quick")
        active.release()
        return "done"

    task = asyncio.create_task(serial.run(slow))
    await asyncio.sleep(0.05)
    task.cancel()
    assert await serial.run(quick) == "done"
    assert events == ["slow start", "slow end", "quick"]
    serial.shutdown()


async def test_restarts_after_shutdown_on_one_thread() -> None:
    serial = SerialThread("test")
    first = await serial.run(threading.get_ident)
    assert await serial.run(threading.get_ident) == first
    serial.shutdown()
    assert isinstance(await serial.run(threading.get_ident), int)
    serial.shutdown()
