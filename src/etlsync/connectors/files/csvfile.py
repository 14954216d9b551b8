"""CSV files as a source and a sink, streamed in chunks of whole records."""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator, Sequence
from itertools import chain
from operator import itemgetter
from typing import IO, Any

from etlsync.connectors.files._common import FileSink, FileSource, Unit
from etlsync.connectors.files._csvarrow import (
    ARROW_CHUNK_BYTES,
    ArrowChunkParser,
    CountingLines,
    body_start,
)
from etlsync.core.batch import Row
from etlsync.core.errors import ConfigError, DataError, SchemaError
from etlsync.core.modes import SyncMode, WriteMode
from etlsync.core.schema import Column, ColumnType, Schema

CHUNK_BYTES = 1 << 17
"""Bytes read at a time; a chunk is cut after the last complete record in it."""

ENGINES = ("python", "arrow")
"""The CSV parsers of :class:`CsvSource`: the csv module, or pyarrow's (``parquet`` extra)."""


def _check_encoding(encoding: str) -> str:
    try:
        info = codecs.lookup(encoding)
    except LookupError as exc:
        raise ConfigError(f"unknown encoding {encoding!r}") from exc
    encode = info.incrementalencoder().encode
    encode("x")  # a BOM (utf-8-sig) comes with the first character only
    if encode("\n") != b"\n":
        raise ConfigError(f"encoding {encoding!r} is not ASCII-compatible; convert the file "
                          "to UTF-8 (positions are byte offsets cut at newlines)")
    return encoding


def read_chunks(path: str, start: int, cut: Any, chunk_bytes: int | None = None
                ) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` chunks of ``path`` from ``start``, each ending where ``cut`` says
    a record ends (a chunk grows until one does); the last chunk is what remains."""
    size = chunk_bytes or CHUNK_BYTES
    with open(path, "rb") as f:
        f.seek(start)
        pos, carry = start, b""
        while True:
            data = f.read(size)
            if not data:
                if carry:
                    yield pos, carry
                return
            buf = carry + data if carry else data
            end = cut(buf)
            if end <= 0:
                carry = buf
                continue
            yield pos, buf[:end] if end < len(buf) else buf
            pos += end
            carry = buf[end:]


def csv_cut(quotechar: str) -> Any:
    """A cut function: the end of the last line whose prefix has balanced quotes (a newline
    inside a quoted field is not a record end)."""
    q = quotechar.encode()

    def cut(buf: bytes) -> int:
        end = buf.rfind(b"\n")
        if end < 0:
            return 0
        quotes = buf.count(q, 0, end)  # in the prefix; updated as ``end`` moves back
        while end >= 0:
            if quotes % 2 == 0:
                return end + 1
            prev = buf.rfind(b"\n", 0, end)
            quotes -= buf.count(q, prev + 1, end)
            end = prev
        return 0

    return cut


class CsvSource(FileSource):
    """Rows of CSV files: a file or a glob read in sorted path order, in constant memory.

    Values are strings exactly as in the file (an empty field stays ``""``); typing is the
    Cast operator's job. Resumes inside a file from the last committed batch.

    :param path: a file or a glob (``data/*.csv``, ``**`` allowed).
    :param header: the first record of each file names the columns.
    :param columns: with ``header``: keep only these columns; without: the column names
        (default ``column1``, ``column2``, ...).
    :param sync_mode: ``full_refresh`` (every run reads all) or ``incremental`` (only rows
        above the watermark of ``cursor_field``; see docs/concepts/incremental.md).
    :param cursor_type: compare cursor values as this type (values stay strings in rows);
        default: compare the strings.
    :param engine: ``python`` (the csv module; record-form batches) or ``arrow`` (pyarrow's
        parser, 1 MiB chunks, arrow-form batches of string columns; the same rows, errors
        and positions; a chunk arrow might read differently is read by the csv module).
    """

    name = "csv"

    def __init__(self, path: str | os.PathLike[str], *, stream: str | None = None,
                 batch_size: int = 10_000, delimiter: str = ",", quotechar: str = '"',
                 encoding: str = "utf-8", header: bool = True,
                 columns: Sequence[str] | None = None,
                 sync_mode: SyncMode | str = SyncMode.FULL_REFRESH,
                 cursor_field: str | None = None, primary_key: Sequence[str] = (),
                 cursor_type: ColumnType | str | None = None, engine: str = "python") -> None:
        super().__init__(path, stream=stream, batch_size=batch_size, sync_mode=sync_mode,
                         cursor_field=cursor_field, primary_key=primary_key,
                         cursor_type=cursor_type)
        if len(delimiter) != 1 or len(quotechar) != 1:
            raise ConfigError("delimiter and quotechar must be single characters")
        if engine not in ENGINES:
            raise ConfigError(f"CsvSource: unknown engine {engine!r}; expected one of "
                              f"{', '.join(map(repr, ENGINES))}")
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.encoding = _check_encoding(encoding)
        self.header = header
        self.columns = list(columns) if columns is not None else None
        self.engine = engine
        self._cut = csv_cut(quotechar)
        self._arrow: ArrowChunkParser | None = None
        if engine == "arrow":
            parser = ArrowChunkParser(delimiter, quotechar, encoding)
            self._arrow = parser if parser.usable else None

    def _reader(self, text: str) -> Iterator[list[str]]:
        return csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter,
                          quotechar=self.quotechar)

    def read_header(self, path: str) -> list[str]:
        """The column names of ``path`` (its first record, or the configured names)."""
        if not self.header:
            return []
        with open(path, encoding=self.encoding, newline="") as f:
            reader = csv.reader(f, delimiter=self.delimiter, quotechar=self.quotechar)
            first = next(filter(None, reader), None)  # blank lines before it: as _units
        return first or []

    def _layout(self, path: str, header: list[str], width: int
                ) -> tuple[list[str], itemgetter[Any] | None]:
        if not self.header:
            names = self.columns or [f"column{i + 1}" for i in range(width)]
            return names, None
        if self.columns is None:
            return header, None
        missing = [c for c in self.columns if c not in header]
        if missing:
            raise SchemaError(f"{path}: columns {missing} not in the header {header}")
        return list(self.columns), itemgetter(*[header.index(c) for c in self.columns])

    def _units(self, path: str, start: int) -> Iterator[Unit]:
        header = self.read_header(path) if start > 0 else []
        names: tuple[str, ...] | None = None
        pick: itemgetter[Any] | None = None
        index: list[int] | None = None
        arrow = self._arrow
        size = ARROW_CHUNK_BYTES if arrow is not None else CHUNK_BYTES
        for offset, chunk in read_chunks(path, start, self._cut, size):
            body = 0  # where the chunk's data records start (after a header)
            reader: Iterator[list[str]] | None = None
            if arrow is None or names is None or (offset == 0 and self.header):
                text = self._decode(path, offset, chunk)
                lines = CountingLines(text) if arrow is not None else None
                reader = self._reader(text) if lines is None else csv.reader(
                    lines, delimiter=self.delimiter, quotechar=self.quotechar)
                if offset == 0 and self.header:
                    header = next(filter(None, reader), [])
                    if lines is not None:
                        body = body_start(chunk, text, lines.used)
                if names is None:
                    if not self.header and self.columns is None:
                        first = next(filter(None, reader), None)
                        if first is None:
                            yield Unit(offset, offset + len(chunk), [])
                            continue
                        reader = chain([first], reader)
                        width = len(first)
                    else:
                        width = len(header) if self.header else len(self.columns or ())
                    layout, pick = self._layout(path, header, width)
                    names = tuple(layout)
                    if len(set(names)) != len(names):
                        dup = next(n for n in names if names.count(n) > 1)
                        raise SchemaError(f"{path}: column {dup!r} appears more than once in "
                                          f"{list(names)}")
                    index = ([header.index(c) for c in names] if pick is not None
                             else None)
            width = len(header) if pick is not None else len(names)
            if arrow is not None:
                table = arrow.parse(chunk[body:] if body else chunk, width, names, index)
                if table is not None:
                    yield Unit(offset, offset + len(chunk), [], names, table)
                    continue
                if reader is None:  # the csv module reads this chunk (same values)
                    reader = self._reader(self._decode(path, offset, chunk))
            assert reader is not None
            # records stay the csv module's lists: no dict per row (see Batch's record form)
            records: list[Any] = list(reader)
            if records and set(map(len, records)) != {width}:
                records = [r for r in records if r]  # blank lines
                self._check_widths(path, width, records)
            if pick is not None:
                records = ([(v,) for v in map(pick, records)] if len(names) == 1
                           else list(map(pick, records)))
            yield Unit(offset, offset + len(chunk), records, names)

    def _decode(self, path: str, offset: int, chunk: bytes) -> str:
        try:
            return chunk.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: bytes {offset + exc.start}: not {self.encoding}: "
                            f"{exc.reason}") from exc

    @staticmethod
    def _check_widths(path: str, width: int, recs: Sequence[Any]) -> None:
        bad = next((r for r in recs if len(r) != width), None)
        if bad is not None:
            fields = list(bad.values()) if isinstance(bad, dict) else bad
            count = f"more than {width}" if len(bad) > width else str(len(bad))
            raise DataError(f"{path}: a record has {count} fields, expected {width}: "
                            f"{fields[:10]!r}", row=fields)

    async def discover(self) -> dict[str, Schema]:
        files = self.files()
        header = self.read_header(files[0])
        names, _ = self._layout(files[0], header, len(header))
        if not self.header and not names:
            for unit in self._units(files[0], 0):
                names = list(unit.columns or ())
                break
        return {self.stream: Schema(tuple(Column(n, ColumnType.STRING) for n in names),
                                    tuple(self.primary_key))}


def _text(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


_PLAIN = (str, int, float)


class CsvSink(FileSink):
    """Writes rows to a CSV file. The columns are those of the first row (or the header of
    the existing file in append mode); a later row with another column raises
    :class:`SchemaError`. ``None`` is written as an empty field, booleans as ``true``/
    ``false``, dates and times in ISO 8601, bytes as hex.

    :param write_mode: ``append`` (durable per batch) or ``overwrite`` (atomic replacement
        once the pass is complete).
    """

    name = "csv"

    def __init__(self, path: str | os.PathLike[str], *, delimiter: str = ",",
                 encoding: str = "utf-8", header: bool = True,
                 write_mode: WriteMode | str = WriteMode.APPEND) -> None:
        super().__init__(path, write_mode)
        self.delimiter = delimiter
        self.encoding = _check_encoding(encoding)
        self.header = header
        self._file: IO[str] | None = None
        self._writer: Any = None
        self._columns: list[str] | None = None

    def _open_sync(self) -> None:
        target = self.target_path
        self._columns = None
        if not self._temp and os.path.exists(target) and os.path.getsize(target) > 0:
            if self.header:
                with open(target, encoding=self.encoding, newline="") as f:
                    self._columns = next(csv.reader(f, delimiter=self.delimiter), None)
            self._file = open(target, "a", encoding=self.encoding, newline="")  # noqa: SIM115
        else:
            self._file = open(target, "w", encoding=self.encoding, newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file, delimiter=self.delimiter)

    def _write_sync(self, rows: list[Row], durable: bool) -> None:
        assert self._file is not None
        if self._columns is None:
            self._columns = list(rows[0])
            if self.header:
                self._writer.writerow(self._columns)
        cols = self._columns
        known = set(cols)
        for r in rows:
            if len(r) != len(cols) or not known.issuperset(r):
                extra = [k for k in r if k not in known]
                if extra:
                    raise SchemaError(f"CsvSink({self.path!r}): column {extra[0]!r} is not in "
                                      f"the file's columns {cols}")
        get = itemgetter(*cols)
        out: list[Any]
        if len(cols) == 1:
            out = [[_text(r.get(cols[0]))] for r in rows]
        else:
            out = [tuple(v if type(v) in _PLAIN else _text(v) for v in get(r))
                   if len(r) == len(cols) else tuple(_text(r.get(c)) for c in cols)
                   for r in rows]
        self._writer.writerows(out)
        if durable:
            self._file.flush()
            os.fsync(self._file.fileno())

    def _close_sync(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
