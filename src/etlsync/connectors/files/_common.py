"""Shared machinery of the file connectors: globs, resumable positions, passes, watermarks.

A file source reads a *pass* over the sorted files of its glob. Its position is a dict::

    {"file": path, "offset": unit_start, "skip": rows_done_in_unit,
     "wm": {"base": state, "next": state}}  # "wm": incremental only

``offset`` is where a unit (a chunk of whole records: a byte offset for CSV and JSON Lines, a
row index for Parquet) starts; ``skip`` counts the rows of that unit already delivered. So a
resumed read costs at most one unit of re-parsing and holds one unit in memory.

The last batch of a pass is empty and marked ``end_of_pass`` (the sources declare
``PASSES``): the next run of a full refresh starts a new pass from the first file; an
incremental run starts a new pass with the watermark reached (:meth:`FileSource.next_pass`).
Sinks that replace their target (overwrite) install the new data set at that signal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from etlsync.core.batch import Batch, Op, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError, DataError
from etlsync.core.incremental import PassWatermark as FileWatermark
from etlsync.core.modes import SyncMode, WriteMode
from etlsync.core.schema import ColumnType, Schema
from etlsync.core.serial import SerialThread
from etlsync.core.stages import Sink, Source, StageContext
from etlsync.core.tracker import TicketHold

_GLOB_CHARS = set("*?[")


def expand(path: str | os.PathLike[str]) -> list[str]:
    """The files of ``path`` (a file or a glob), in sorted path order."""
    text = os.fspath(path)
    if _GLOB_CHARS & set(text):
        return sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
    return [text]


def default_stream(path: str | os.PathLike[str]) -> str:
    """A stream name from a path: the file's stem, or for a glob its directory's name."""
    text = os.fspath(path)
    p = Path(text)
    if _GLOB_CHARS & set(text):
        parent = next((q for q in p.parents if not (_GLOB_CHARS & set(q.name))), None)
        return (parent.name if parent is not None else "") or "files"
    return p.stem or "file"


_CONVERTERS: dict[ColumnType, Callable[[Any], Any]] = {
    ColumnType.STRING: str,
    ColumnType.INTEGER: int,
    ColumnType.FLOAT: float,
    ColumnType.DECIMAL: lambda v: v if isinstance(v, Decimal) else Decimal(str(v)),
    ColumnType.DATE: lambda v: v if isinstance(v, dt.date) else dt.date.fromisoformat(v),
    ColumnType.DATETIME: lambda v: v if isinstance(v, dt.datetime)
    else dt.datetime.fromisoformat(v),
    ColumnType.TIMESTAMP: lambda v: v if isinstance(v, dt.datetime)
    else dt.datetime.fromisoformat(v),
}


@dataclass(slots=True)
class Unit:
    """Whole records of one file: rows, where the unit starts and where the next starts.

    With ``columns``, ``rows`` holds records (value sequences in that column order) and the
    source emits record-form batches; without, it holds dicts. With ``arrow`` (a
    ``pyarrow.Table`` whose names are ``columns``), the rows are that table's and ``rows``
    is empty: the source emits arrow-form batches."""

    start: int
    end: int
    rows: list[Any]
    columns: tuple[str, ...] | None = None
    arrow: Any = None

    def __len__(self) -> int:
        return len(self.rows) if self.arrow is None else int(self.arrow.num_rows)


class FileSource(Source):
    """Base of the file sources: a pass over a glob, resumable, optionally incremental."""

    row_offsets = False
    """Units are addressed by row index (any row is a resume point), not byte offset."""
    capabilities = frozenset({Capability.PASSES})

    def __init__(self, path: str | os.PathLike[str], *, stream: str | None, batch_size: int,
                 sync_mode: SyncMode | str, cursor_field: str | None,
                 primary_key: Sequence[str], cursor_type: ColumnType | str | None) -> None:
        self._serial = SerialThread("etlsync-file-source")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.path = os.fspath(path)
        self.stream = stream or default_stream(self.path)
        self.batch_size = batch_size
        self.sync_mode = SyncMode(sync_mode)
        if self.sync_mode == SyncMode.CDC:
            raise ConfigError(f"{type(self).__name__}: sync_mode 'cdc' is not supported by files")
        if self.sync_mode == SyncMode.INCREMENTAL and not cursor_field:
            raise ConfigError(f"{type(self).__name__}({self.path!r}): incremental sync needs "
                              "cursor_field")
        self.cursor_field = cursor_field
        self.primary_key = tuple(primary_key)
        self._convert = None if cursor_type is None else _CONVERTERS[ColumnType(cursor_type)]

    @abstractmethod
    def _units(self, path: str, start: int) -> Iterator[Unit]:
        """Units of whole records of ``path`` from the unit starting at ``start``."""

    def _schema(self) -> Schema | None:
        return None

    def files(self) -> list[str]:
        """The files of this source's pass, in the order they are read."""
        files = expand(self.path)
        if not files:
            raise ConfigError(f"{type(self).__name__}: no file matches {self.path!r}")
        return files

    def next_pass(self, position: Any) -> Any | None:
        """Every pass reads all files again; an incremental one keeps the watermark."""
        if isinstance(position, dict) and position.get("wm") is not None:
            return {"wm": position["wm"]}
        return None

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        pos = dict(position) if isinstance(position, dict) else {}
        wm_state = pos.get("wm")
        wm = None
        if self.sync_mode == SyncMode.INCREMENTAL:
            assert self.cursor_field is not None
            wm = FileWatermark(self.cursor_field, self.primary_key, self._convert, wm_state)
        start_file: str | None = pos.get("file")
        start_offset, start_skip = int(pos.get("offset", 0)), int(pos.get("skip", 0))
        files = [f for f in self.files() if start_file is None or f >= start_file]
        schema = self._schema()
        pending: list[Any] = []  # rows or records, or arrow table slices
        pending_n = 0
        columns: tuple[str, ...] | None = None
        arrow = False  # the pending rows are arrow slices
        size = self.batch_size
        it = self._iter_units(files, start_file, start_offset, start_skip)
        assert isinstance(it, Generator)
        last: dict[str, Any] = {}
        try:
            while True:
                item = await self._serial.run(next, it, None)
                if item is None:
                    break
                path, unit, skip = item
                rows, table, i, n = unit.rows, unit.arrow, skip, len(unit)
                if (unit.columns != columns or (table is not None) != arrow) and i < n:
                    if pending:  # another layout or form: what is pending ends here
                        batch = self._make_batch(pending, columns, arrow, last, wm, schema)
                        pending, pending_n = [], 0
                        if batch is not None:
                            yield batch
                    columns, arrow = unit.columns, table is not None
                if n == i and not pending:
                    last = {"file": path, "offset": unit.end, "skip": 0}
                while i < n:
                    take = min(size - pending_n, n - i)
                    if table is not None:
                        pending.append(table.slice(i, take) if take < n else table)
                    else:
                        pending.extend(rows[i:i + take])
                    pending_n += take
                    i += take
                    if i >= n:
                        last = {"file": path, "offset": unit.end, "skip": 0}
                    elif self.row_offsets:
                        last = {"file": path, "offset": unit.start + i, "skip": 0}
                    else:
                        last = {"file": path, "offset": unit.start, "skip": i}
                    if pending_n >= size:
                        batch = self._make_batch(pending, columns, arrow, last, wm, schema)
                        pending, pending_n = [], 0
                        if batch is not None:
                            yield batch
            if pending:
                batch = self._make_batch(pending, columns, arrow, last, wm, schema)
                if batch is not None:
                    yield batch
        finally:
            with contextlib.suppress(Exception):
                await self._serial.run(it.close)
            self._serial.shutdown()
        end: dict[str, Any] = {"file": None, "offset": 0, "skip": 0}
        if wm is not None:
            end["wm"] = wm.completed_state()
        yield Batch([], stream=self.stream, position=end, schema=schema, end_of_pass=True)

    def _make_batch(self, rows: list[Any], columns: tuple[str, ...] | None, arrow: bool,
                    last: dict[str, Any], wm: FileWatermark | None,
                    schema: Schema | None) -> Batch | None:
        position: dict[str, Any] = dict(last)
        if arrow:  # rows are slices of arrow tables with equal schemas
            if len(rows) == 1:
                table = rows[0]
            else:
                import pyarrow as pa  # arrow units come from pyarrow: it is there

                table = pa.concat_tables(rows)
            if wm is None:
                return Batch.from_arrow(table, stream=self.stream, position=position,
                                        schema=schema)
            rows, columns = Batch.from_arrow(table).rows, None
        if wm is not None:
            if columns is not None:
                rows = Batch.from_records(columns, rows).rows
            rows = wm.admit(rows)
            position["wm"] = wm.state()
            if not rows:
                return None
        elif columns is not None:
            return Batch.from_records(columns, rows, stream=self.stream, position=position,
                                      schema=schema)
        return Batch(rows, stream=self.stream, position=position, schema=schema)

    def _iter_units(self, files: list[str], start_file: str | None, start_offset: int,
                    start_skip: int) -> Iterator[tuple[str, Unit, int]]:
        for path in files:
            resume = path == start_file
            remaining = start_skip if resume else 0
            for unit in self._units(path, start_offset if resume else 0):
                # chunks may be cut elsewhere than in the run that wrote the position: the
                # rows to skip may span several units
                skip = min(remaining, len(unit))
                remaining -= skip
                yield path, unit, skip


# -- sinks ------------------------------------------------------------------------------------


class FileSink(Sink):
    """Base of the file sinks.

    ``append`` adds to the file and makes every batch durable (flush + fsync) before
    ``write`` returns. ``overwrite`` writes a temporary file next to the target and renames it
    over the target at the end of the pass (``Batch.end_of_pass``): the old file stays until
    the new one is complete. Until then the sink holds the batches' checkpoint tickets, so a
    crash re-reads the pass instead of losing it.
    """

    replace_on_finish = False
    """Subclasses whose format can only be written whole (Parquet) set this."""

    def __init__(self, path: str | os.PathLike[str], write_mode: WriteMode | str) -> None:
        self._serial = SerialThread("etlsync-file-sink")
        self.path = os.fspath(path)
        self.write_mode = WriteMode(write_mode)
        if self.write_mode == WriteMode.UPSERT:
            raise ConfigError(f"{type(self).__name__}: write_mode 'upsert' needs a keyed target "
                              "(use SqliteSink); files support append and overwrite")
        self._temp = self.write_mode == WriteMode.OVERWRITE or self.replace_on_finish
        self._held = TicketHold()
        self._finished = False
        self._context: StageContext | None = None

    @property
    def target_path(self) -> str:
        """Where rows are written now: the temporary file while a replacement is open."""
        return self.path + ".etlsync-tmp" if self._temp else self.path

    async def open(self, context: StageContext) -> None:
        self._context = context
        await self._serial.run(self._prepare_sync)

    def _prepare_sync(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._open_sync()

    async def write(self, batch: Batch) -> None:
        if batch.ops is not None and any(op != Op.INSERT for op in batch.ops):
            bad = next(op for op in batch.ops if op != Op.INSERT)
            raise DataError(f"{type(self).__name__}({self.path!r}) cannot apply {bad.value!r} "
                            f"changes of stream {batch.stream!r}; write them to SQLite")
        if self._finished:
            await self._serial.run(self._open_sync)
            self._finished = False
        if len(batch):
            await self._serial.run(self._write_sync, batch.rows, not self._temp)
        if self._temp:
            if batch.end_of_pass:
                await self._serial.run(self._finish_sync)
                self._finished = True
                self._held.release()
            else:
                self._held.add(batch)

    async def close(self) -> None:
        try:
            if self._temp and not self._finished:
                await self._serial.run(self._discard_sync)
            elif not self._finished:
                await self._serial.run(self._close_sync)
        finally:
            self._held.clear()
            self._serial.shutdown()

    def _finish_sync(self) -> None:
        self._close_sync()
        tmp = self.target_path
        if not os.path.exists(tmp):
            return
        os.replace(tmp, self.path)
        fsync_dir(self.path)

    def _discard_sync(self) -> None:
        self._close_sync()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.target_path)

    @abstractmethod
    def _open_sync(self) -> None:
        """Open the file to write (the temporary file in overwrite mode)."""

    @abstractmethod
    def _write_sync(self, rows: list[Row], durable: bool) -> None:
        """Write rows; when ``durable``, flush and fsync before returning."""

    @abstractmethod
    def _close_sync(self) -> None:
        """Flush, fsync and close the open file, if any."""


def fsync_dir(path: str) -> None:
    """Make a rename of ``path`` durable (fsync its directory), where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
