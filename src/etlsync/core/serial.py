"""Blocking calls for one resource, run one at a time, in order, on one dedicated thread."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class SerialThread:
    """Runs a blocking driver's calls (sqlite3, file I/O) off the event loop, strictly in
    order on one thread.

    ``asyncio.to_thread`` may run two calls on the same connection at once: a cancelled await
    leaves its call running while the next one (often ``close``) starts on another thread,
    and C drivers such as sqlite3 crash on that. Here a call queued after a cancelled one
    waits for it. Restartable: ``run`` after ``shutdown`` starts a new thread.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on this object's thread and return its result."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        """Let the thread end once queued calls are done (does not wait)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
