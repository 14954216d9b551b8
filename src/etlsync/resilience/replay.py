"""Send dead letters back through a pipeline once the cause is fixed.

In code::

    summary = await replay(JsonlDeadLetterSink("dead.jsonl"), [sink], pipeline="orders")

From the shell (the sink comes from a factory ``module:callable`` returning a Sink)::

    python -m etlsync.resilience.replay --from dead.jsonl --sink myjob:make_sink \\
        --pipeline orders

A letter is marked replayed once the checkpoint passed it, that is once every sink made
its row durable; a row that fails again (with the sink wrapped in :class:`Resilient`
and the same dead-letter sink) comes back as a new letter with the new error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from etlsync.core.batch import Batch, Op, Row
from etlsync.core.metrics import RunSummary
from etlsync.core.pipeline import Pipeline
from etlsync.core.stages import Operator, Sink, Source
from etlsync.log import get_logger
from etlsync.resilience.deadletter import (
    DeadLetter,
    DeadLetterSink,
    JsonlDeadLetterSink,
    PostgresDeadLetterSink,
    SqliteDeadLetterSink,
)

Fix = Callable[[Row], Row | None]
"""Repairs a row before it is replayed; return ``None`` to leave the letter for later."""


class DeadLetterSource(Source):
    """Reads the not-yet-replayed letters of a dead-letter sink as batches.

    Consecutive letters of the same stream form a batch (at most ``batch_size`` rows); the
    batch position is the id of its last letter. :meth:`on_commit` marks the letters up to
    the committed position as replayed.

    :param pipeline: only letters recorded by this pipeline (``None``: all).
    :param stream: only letters of this stream.
    :param fix: applied to each row first; letters it returns ``None`` for are not sent.
    """

    name = "dead_letters"

    def __init__(self, store: DeadLetterSink, *, pipeline: str | None = None,
                 stream: str | None = None, batch_size: int = 1000,
                 fix: Fix | None = None) -> None:
        self.store = store
        self.pipeline = pipeline
        self.stream = stream
        self.batch_size = batch_size
        self.fix = fix
        self._pending: list[tuple[int, list[int]]] = []
        self.replayed = 0
        self.held_back = 0

    async def _letters(self, after: int) -> list[DeadLetter]:
        await self.store.open()
        out = []
        async for letter in self.store.read(pipeline=self.pipeline):
            if letter.id is None or letter.id <= after:
                continue
            if self.stream is not None and letter.stream != self.stream:
                continue
            out.append(letter)
        return out

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        letters = await self._letters(int(position or 0))
        group: list[tuple[DeadLetter, Row]] = []
        for letter in letters:
            row = letter.row if self.fix is None else self.fix(dict(letter.row))
            if row is None:
                self.held_back += 1
                continue
            if group and (group[-1][0].stream != letter.stream or len(group) >= self.batch_size):
                yield self._batch(group)
                group = []
            group.append((letter, row))
        if group:
            yield self._batch(group)

    def _batch(self, group: list[tuple[DeadLetter, Row]]) -> Batch:
        ids = [letter.id for letter, _ in group if letter.id is not None]
        ops = [Op(letter.op) for letter, _ in group]
        has_ops = any(op is not Op.INSERT for op in ops)
        before = [letter.before for letter, _ in group]
        self._pending.append((ids[-1], ids))
        return Batch([row for _, row in group], stream=group[0][0].stream, position=ids[-1],
                     ops=ops if has_ops else None,
                     before=before if has_ops and any(b is not None for b in before) else None)

    async def on_commit(self, position: Any) -> None:
        done: list[int] = []
        while self._pending and self._pending[0][0] <= int(position):
            done.extend(self._pending.pop(0)[1])
        if done:
            await self.store.mark_replayed(done)
            self.replayed += len(done)


async def replay(
    dead_letters: DeadLetterSink,
    sinks: Sequence[Sink] | Sink,
    *,
    operators: Sequence[Operator] = (),
    pipeline: str | None = None,
    stream: str | None = None,
    fix: Fix | None = None,
    batch_size: int = 1000,
    name: str = "replay",
) -> RunSummary:
    """Replay the dead letters of ``pipeline`` (all if ``None``) into ``sinks``.

    :returns: the replay pipeline's :class:`RunSummary`; letters whose rows every sink made
        durable are marked replayed.
    """
    source = DeadLetterSource(dead_letters, pipeline=pipeline, stream=stream,
                              batch_size=batch_size, fix=fix)
    try:
        summary = await Pipeline(source, operators, sinks, name=name).run(handle_signals=False)
    finally:
        await dead_letters.close()
    get_logger(pipeline=name).info("replay finished", replayed=source.replayed,
                                   held_back=source.held_back)
    return summary


def open_dead_letters(spec: str, *, table: str = "etlsync_dead_letters") -> DeadLetterSink:
    """A dead-letter sink from a spec: ``path.jsonl``, ``jsonl:PATH``, ``sqlite:PATH`` or a
    ``postgresql://`` DSN."""
    if spec.startswith(("postgres://", "postgresql://")):
        return PostgresDeadLetterSink(spec, table)
    kind, sep, rest = spec.partition(":")
    if sep and kind == "sqlite":
        return SqliteDeadLetterSink(rest, table)
    if sep and kind == "jsonl":
        return JsonlDeadLetterSink(rest)
    if spec.endswith((".db", ".sqlite", ".sqlite3")):
        return SqliteDeadLetterSink(spec, table)
    return JsonlDeadLetterSink(spec)


def _load_factory(spec: str) -> Callable[..., Any]:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise SystemExit(f"--sink must be module:callable, got {spec!r}")
    sys.path.insert(0, os.getcwd())
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise SystemExit(f"--sink {spec!r} is not callable")
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m etlsync.resilience.replay``: replay dead letters into a sink."""
    ap = argparse.ArgumentParser(prog="python -m etlsync.resilience.replay",
                                 description="Send dead letters back through a sink.")
    ap.add_argument("--from", dest="source", required=True,
                    help="dead letters: FILE.jsonl, jsonl:PATH, sqlite:PATH, or a postgresql:// "
                         "DSN (or set --from-env)")
    ap.add_argument("--from-env", action="store_true",
                    help="read the --from value from the environment variable it names")
    ap.add_argument("--table", default="etlsync_dead_letters", help="dead-letter table")
    ap.add_argument("--sink", help="module:callable returning the Sink (or a list of sinks)")
    ap.add_argument("--sink-args", default="{}", help="JSON object of keyword arguments")
    ap.add_argument("--pipeline", help="only letters of this pipeline")
    ap.add_argument("--stream", help="only letters of this stream")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--dry-run", action="store_true", help="count the letters, send nothing")
    args = ap.parse_args(argv)
    spec = os.environ.get(args.source, "") if args.from_env else args.source
    if not spec:
        ap.error(f"environment variable {args.source} is empty")
    store = open_dead_letters(spec, table=args.table)

    async def run() -> int:
        if args.dry_run or not args.sink:
            try:
                await store.open()
                n = 0
                async for letter in store.read(pipeline=args.pipeline):
                    if args.stream is None or letter.stream == args.stream:
                        n += 1
            finally:
                await store.close()
            print(json.dumps({"pending": n}))
            return 0
        made = _load_factory(args.sink)(**json.loads(args.sink_args))
        sinks = made if isinstance(made, (list, tuple)) else [made]
        summary = await replay(store, sinks, pipeline=args.pipeline, stream=args.stream,
                               batch_size=args.batch_size)
        print(json.dumps({"status": summary.status, "rows": summary.rows_written,
                          "seconds": round(summary.duration_seconds, 3)}))
        return 0 if summary.status == "completed" else 1

    return asyncio.run(run())


if __name__ == "__main__":
    raise SystemExit(main())
