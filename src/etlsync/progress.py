"""A terminal progress line for running pipelines: rows, rows/s and elapsed time.

Drawn only on a TTY (stderr by default) and only once a run has lasted ``delay`` seconds, so
short runs and logs piped to files stay clean. It reads :attr:`Pipeline.metrics`; it never
slows the pipeline beyond one small task waking a few times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from types import TracebackType
from typing import Any, TextIO

from etlsync.core.pipeline import Pipeline


def format_line(rows_read: int, rows_written: int, elapsed: float) -> str:
    """``12,345 rows read | 12,000 written | 4,115 rows/s | 00:03``."""
    rate = rows_read / elapsed if elapsed > 0 else 0.0
    minutes, seconds = divmod(int(elapsed), 60)
    hours, minutes = divmod(minutes, 60)
    clock = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"
    return (f"{rows_read:,} rows read | {rows_written:,} written | {rate:,.0f} rows/s | {clock}")


def counts(pipeline: Pipeline) -> tuple[int, int]:
    """(rows read by the source, rows written by the first sink) so far."""
    read = written = 0
    first_sink = True
    for key, m in pipeline.metrics.items():
        if key.startswith("source:"):
            read += m.rows_out
        elif key.startswith("sink:") and first_sink:
            written, first_sink = m.rows_in, False
    return read, written


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
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._width = 0

    async def __aenter__(self) -> Progress:
        self._started = time.perf_counter()
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
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
        read, written = counts(self.pipeline)
        line = format_line(read, written, time.perf_counter() - self._started)
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
