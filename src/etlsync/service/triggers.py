"""Event triggers: files arriving in a directory, and messages from an etlsync source.

**Files** (`watchfiles <https://pypi.org/project/watchfiles/>`_, Rust ``notify`` underneath:
inotify on Linux, FSEvents on macOS): a file matching ``pattern`` that appears or changes in
``path`` queues a run with ``${trigger.path}`` and ``${trigger.name}``. Files already there
at start are picked up too. A file is one run per (path, size, modification time), across
restarts and instances (the dedupe key): write files elsewhere and rename them in.

**Messages**: a trigger whose ``source`` is any etlsync source (Kafka, RabbitMQ, ... as they
land; ``memory`` in tests) runs as a small pipeline whose sink queues one run per message
(row): the row is ``${trigger.message}`` and its fields ``${trigger.<field>}``. The run is
recorded in the state database before the sink returns, so the source acknowledges a message
(its ``on_commit``) only once its run is queued durably; a redelivered message finds its run
by its dedupe key (source position and row) and queues nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etlsync.core.batch import Batch
from etlsync.core.codec import dumps
from etlsync.core.pipeline import Pipeline
from etlsync.core.stages import Sink, StageContext
from etlsync.jobs.build import build_checkpoint, build_source
from etlsync.jobs.spec import parse_job
from etlsync.log import get_logger
from etlsync.service.project import JobEntry, TriggerSpec

if TYPE_CHECKING:
    from etlsync.service.service import Service

log = get_logger(component="triggers")


class FileTrigger:
    def __init__(self, service: Service, entry: JobEntry, spec: TriggerSpec) -> None:
        self.service, self.entry, self.spec = service, entry, spec
        self.directory = service.project.resolve(spec.path or ".")
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        await self.scan()
        if self.service.watch:
            self._task = asyncio.create_task(self._watch(), name=f"etlsync-files-{self.entry.name}")

    async def scan(self) -> None:
        """Queue a run for every matching file not seen before."""
        def listing() -> list[Path]:
            found = self.directory.rglob("*") if self.spec.recursive else \
                self.directory.iterdir()
            return sorted(found)
        for p in await asyncio.to_thread(listing):
            await self.offer(p)

    def _identity(self, path: Path) -> tuple[str, int, str] | None:
        """The file's absolute path, size and dedupe key, or ``None`` if it is not one to
        load (not a file, not matching, gone)."""
        if not fnmatch.fnmatch(path.name, self.spec.pattern):
            return None
        try:
            st = path.stat()
            full = str(path.resolve())
        except FileNotFoundError:
            return None
        if not path.is_file():
            return None
        return full, st.st_size, hashlib.sha1(
            f"{full}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()

    async def offer(self, path: Path) -> None:
        found = await asyncio.to_thread(self._identity, path)
        if found is None:
            return
        full, size, key = found
        await self.service.enqueue(
            self.entry, "files", context={"trigger": {"path": full, "name": path.name,
                                                      "size": size}},
            dedupe=f"files:{self.entry.name}:{key}")

    async def _watch(self) -> None:
        from watchfiles import Change, awatch

        async for changes in awatch(self.directory, recursive=self.spec.recursive,
                                    stop_event=self._stop):
            for change, name in sorted(changes, key=lambda c: c[1]):
                if change in (Change.added, Change.modified):
                    try:
                        await self.offer(Path(name))
                    except Exception as exc:  # noqa: BLE001 - one bad file never stops the watch
                        log.error("file trigger failed", job=self.entry.name, file=name,
                                  error=str(exc))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 5)


class EnqueueSink(Sink):
    """The sink of a message trigger: one queued run per row, durable before ``write``
    returns (so the source acknowledges only what is queued)."""

    name = "enqueue"

    def __init__(self, service: Service, entry: JobEntry) -> None:
        self.service, self.entry = service, entry
        self.queued = 0

    async def open(self, context: StageContext) -> None:
        self.context = context

    async def write(self, batch: Batch) -> None:
        if not len(batch):
            return
        where = hashlib.sha1(dumps(batch.position)).hexdigest()[:16]
        for i, row in enumerate(batch.rows):
            message = {str(k): v for k, v in row.items()}
            run = await self.service.enqueue(
                self.entry, "message", context={"trigger": {**message, "message": message,
                                                            "stream": batch.stream}},
                dedupe=f"message:{self.entry.name}:{batch.stream}:{where}:{i}")
            self.queued += run is not None


class MessageTrigger:
    """Runs ``source -> EnqueueSink`` until stopped (restarted with backoff on failure)."""

    def __init__(self, service: Service, entry: JobEntry, spec: TriggerSpec, index: int) -> None:
        self.service, self.entry, self.spec = service, entry, spec
        assert spec.source is not None
        doc: dict[str, Any] = {"name": f"{entry.name}.trigger{index}", "source": spec.source,
                               "sink": {"type": "collect"},
                               "checkpoint": {"type": "memory"}}
        self.job = parse_job(doc, service.project.path, service.env)
        self.sink = EnqueueSink(service, entry)
        self.pipeline: Pipeline | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def make_pipeline(self) -> Pipeline:
        source, _ = build_source(self.job)
        store, _ = build_checkpoint(self.job)
        return Pipeline(source, [], self.sink, name=self.job.name, checkpoint_store=store)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"etlsync-messages-{self.entry.name}")

    async def _run(self) -> None:
        delay = 1.0
        while not self._stopping:
            self.pipeline = self.make_pipeline()
            try:
                await self.pipeline.run(handle_signals=False)
                delay = 1.0
            except Exception as exc:  # noqa: BLE001 - the broker may be away: retry
                log.error("message trigger failed; restarting", job=self.entry.name,
                          error=str(exc), delay=delay)
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def stop(self) -> None:
        self._stopping = True
        if self.pipeline is not None:
            self.pipeline.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)


async def start_triggers(service: Service) -> list[Any]:
    """Start every files and message trigger of the project."""
    started: list[Any] = []
    for entry in service.project.jobs.values():
        for i, spec in enumerate(entry.spec.triggers):
            trigger: Any
            if spec.type == "files":
                trigger = FileTrigger(service, entry, spec)
            elif spec.type == "message":
                trigger = MessageTrigger(service, entry, spec, i)
            else:
                continue
            await trigger.start()
            started.append(trigger)
    return started
