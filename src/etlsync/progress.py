"""A terminal progress line for running pipelines: rows, rows/s and elapsed time.

Drawn only on a TTY (stderr by default) and only once a run has lasted ``delay`` seconds, so
short runs and logs piped to files stay clean. It is an observer of the pipeline's events
(docs/concepts/observers.md): counting costs an addition per batch, drawing one small task
waking a few times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from types import TracebackType
from typing import Any, TextIO

from etlsync.core.observe import Event, EventKind
from etlsync.core.pipeline import Pipeline


def format_line(rows_read: int, rows_written: int, elapsed: float) -> str:
    """``12,345 rows read | 12,000 written | 4,115 rows/s | 00:03``."""
    rate = rows_read / elapsed if elapsed > 0 else 0.0
    minutes, seconds = divmod(int(elapsed), 60)
    hours, minutes = divmod(minutes, 60)
    clock = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"
    return (f"{rows_read:,} rows read | {rows_written:,} written | {rate:,.0f} rows/s | {clock}")


class Progress:
    """``async with Progress(pipeline): await pipeline.run()`` draws a live progress line.

    :param enabled: draw at all (the CLI's ``--no-progress`` turns it off).
    :param stream: where to draw (default stderr); nothing is drawn unless it is a TTY.
    :param interval: seconds between redraws.
    :param delay: seconds before the first draw (short runs draw nothing).
    """

    def __init__(self, pipeline: Pipeline, *, enabled: bool = True, stream: TextIO | None = None,
                 interval: float = 0.2, delay: float = 1.0) -> None:
        self.pipeline = pipeline
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and _isatty(self.stream)
        self.interval = interval
        self.delay = delay
        self.drawn = 0
        self.read = 0
        self.written = 0
        self._first_sink: str | None = None
        self._unsubscribe: Any = None
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._width = 0

    def __call__(self, event: Event) -> None:
        """The observer: rows read by the source, rows made durable by the first sink."""
        if event.kind is EventKind.BATCH_READ:
            self.read += event.rows
        elif event.kind is EventKind.BATCH_WRITTEN:
            if self._first_sink is None:
                self._first_sink = event.stage
            if event.stage == self._first_sink:
                self.written += event.rows

    async def __aenter__(self) -> Progress:
        self._started = time.perf_counter()
        self._unsubscribe = self.pipeline.subscribe(self)
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def draw(self) -> None:
        """Redraw the line now."""
        line = format_line(self.read, self.written, time.perf_counter() - self._started)
        pad = max(self._width - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)
        self.drawn += 1

    async def _loop(self) -> None:
        await asyncio.sleep(self.delay)
        while True:
            self.draw()
            await asyncio.sleep(self.interval)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
