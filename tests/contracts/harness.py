"""What the contract tests share: stages built through the job layer (as a user's job file
builds them), what a stage type can do (from its manifest), test sources that stop, fail or
yield change batches, and comparison of rows across targets that store different types."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability, has
from etlsync.core.checkpoint import CheckpointStore, MemoryCheckpointStore
from etlsync.core.metrics import RunSummary
from etlsync.core.pipeline import Pipeline
from etlsync.core.stages import Sink, Source
from etlsync.jobs.build import build_job, build_sink
from etlsync.jobs.spec import parse_job
from etlsync.manifest import REGISTRY, StageType
from tests.contracts.connectors import SinkFactory, SinkTarget, SourceFactory, SourceOrigin

WRITE_MODES = ("append", "overwrite", "upsert")
CONFLICTS = ("skip", "overwrite", "merge", "fail")
POLICIES = ("evolve", "freeze", "discard")


def stage_type(kind: str, name: str) -> StageType:
    return REGISTRY.find(kind, name, f"{kind} {name}")


def choices(kind: str, name: str, option: str) -> tuple[str, ...]:
    """The values the manifest allows for ``option`` (none: the stage has no such option)."""
    options = stage_type(kind, name).options
    if option not in options.__struct_fields__:
        return ()
    hint = typing.get_type_hints(options, include_extras=True)[option]
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return tuple(str(a) for a in typing.get_args(hint))


def job_document(source: dict[str, Any], sink: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"source": source, "sink": sink, **top}


def parse(doc: dict[str, Any], base: Path) -> Any:
    return parse_job(doc, base / "contract.yaml", env={})


def build_target_sink(target: SinkTarget, factory: SinkFactory, table: str, base: Path,
                      **options: Any) -> Sink:
    """The sink a job file ``sink: {type: ..., <location>, **options}`` builds."""
    spec = {"type": factory.type, **target.location(table), **factory.options, **options}
    job = parse({"source": {"type": "memory", "rows": []}, "sink": spec,
                 "checkpoint": {"type": "memory"}}, base)
    sink, _ = build_sink(job, spec, "sink")
    built = getattr(target, "built", None)
    if built is not None:
        built(sink)
    return sink


def build_source(factory: SourceFactory, origin: SourceOrigin, base: Path,
                 **options: Any) -> Source:
    doc = {"source": {"type": factory.type, **origin.spec(), **options},
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    return build_job(parse(doc, base)).source


class Stores:
    """The checkpoint store of each pipeline name of a test: a transactional sink's own store
    (``None``: the pipeline's default), else one memory store shared by the test's runs."""

    def __init__(self) -> None:
        self.memory = MemoryCheckpointStore()

    def for_sink(self, sink: Sink) -> CheckpointStore | None:
        return None if has(sink, Capability.TRANSACTIONAL) else self.memory


async def run(source: Source, sink: Sink, name: str, stores: Stores) -> RunSummary:
    pipeline = Pipeline(source, [], [sink], name=name, checkpoint_store=stores.for_sink(sink))
    return await pipeline.run(handle_signals=False)


async def run_stopped(source: HeldSource, sink: Sink, name: str, stores: Stores) -> RunSummary:
    """Run until ``source`` holds (mid-pass), then stop the pipeline as SIGTERM would."""
    pipeline = Pipeline(source, [], [sink], name=name, checkpoint_store=stores.for_sink(sink))
    task = asyncio.create_task(pipeline.run(handle_signals=False))
    await asyncio.wait([task, asyncio.create_task(source.holding.wait())],
                       return_when=asyncio.FIRST_COMPLETED, timeout=60)
    pipeline.stop()
    return await asyncio.wait_for(task, 60)


class HeldSource(Source):
    """Rows in batches with positions (row counts, as :class:`MemorySource`) that holds after
    ``hold_after`` batches until the pipeline is stopped: a stop lands mid-pass, always.
    ``fail_after`` instead raises there (a failed run)."""

    capabilities = frozenset({Capability.PASSES})

    def __init__(self, rows: Sequence[Row], batch_size: int, *, hold_after: int | None = None,
                 fail_after: int | None = None, stream: str = "rows") -> None:
        self.rows, self.batch_size, self.stream = list(rows), batch_size, stream
        self.hold_after, self.fail_after = hold_after, fail_after
        self.holding = asyncio.Event()

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        start = int(position or 0)
        for n, i in enumerate(range(start, len(self.rows), self.batch_size)):
            if n == self.fail_after:
                raise RuntimeError("the source failed mid-pass")
            if n == self.hold_after:
                self.holding.set()
                await asyncio.Event().wait()
            chunk = self.rows[i:i + self.batch_size]
            yield Batch([dict(r) for r in chunk], stream=self.stream, position=i + len(chunk))
        yield Batch([], stream=self.stream, position=len(self.rows), end_of_pass=True)


class BatchSource(Source):
    """Prepared batches (change batches), positions 1, 2, ... in order."""

    def __init__(self, batches: Sequence[Batch]) -> None:
        self.batches = list(batches)

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        start = int(position or 0)
        for i, b in enumerate(self.batches[start:], start + 1):
            b.position = i
            yield b


def text(value: Any) -> str | None:
    """A value as text, the form every target can be compared in (``None`` stays ``None``)."""
    return None if value is None else str(value)


def table_of(rows: Sequence[Row] | None, columns: Sequence[str], *, key: str = "id"
             ) -> list[tuple[str | None, ...]] | None:
    """``rows`` at ``columns`` as text, sorted by ``key`` (duplicates kept: a row written twice
    shows twice)."""
    if rows is None:
        return None
    out = [tuple(text(r.get(c)) for c in columns) for r in rows]
    i = list(columns).index(key)
    return sorted(out, key=lambda t: (len(t[i] or ""), t[i] or "", t))


def numbered(n: int, start: int = 0, tag: str = "r") -> list[Row]:
    return [{"id": i, "name": f"{tag}{i}", "v": i * 10} for i in range(start, start + n)]


def error_chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out
