"""The pass-through fast path: CSV bytes stream straight into ``COPY ... FROM STDIN (FORMAT
csv)`` and the server parses them. For a file source feeding PostgreSQL with no operator that
changes rows; no Python row objects are made.

The file is loaded in chunks cut at record ends (a newline outside quotes); each chunk is one
transaction that also stores ``{"file", "offset", "rows"}`` under the pipeline's name in the
state table, so a crashed load resumes after the last loaded chunk, exactly once.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from etlsync.connectors.postgres.checkpoint import (
    DEFAULT_STATE_TABLE,
    ensure_state_table,
    write_checkpoint,
)
from etlsync.connectors.postgres.connection import PgConnectionConfig, qualified
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import ConfigError

PIECE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What :func:`copy_csv_file` loaded in this call."""

    rows: int
    bytes: int
    start_offset: int
    chunks: int


def _read(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _header(path: str, delimiter: str, quote: str, encoding: str) -> tuple[list[str], int]:
    with open(path, "rb") as f:
        line = f.readline()
    names = next(csv.reader(io.StringIO(line.decode(encoding)), delimiter=delimiter,
                            quotechar=quote))
    return [n.lstrip("\ufeff") if i == 0 else n for i, n in enumerate(names)], len(line)


class _Chunker:
    """Yields the bytes of one chunk of about ``target`` bytes that ends at a record end."""

    def __init__(self, path: str, offset: int, size: int, target: int, quote: bytes) -> None:
        self.path, self.offset, self.size = path, offset, size
        self.target, self.quote = target, quote

    async def chunk(self) -> AsyncIterator[bytes]:
        sent, odd = 0, False
        while self.offset < self.size:
            piece = await asyncio.to_thread(_read, self.path, self.offset, PIECE_BYTES)
            if sent + len(piece) >= self.target:
                cut = self._cut(piece, odd, max(0, self.target - sent - 1))
                if cut is not None:
                    self.offset += cut
                    yield piece[:cut]
                    return
            odd ^= piece.count(self.quote) % 2 == 1
            self.offset += len(piece)
            sent += len(piece)
            yield piece

    def _cut(self, piece: bytes, odd: bool, start: int) -> int | None:
        """The end of the first record ending at or after ``start`` in ``piece``."""
        while True:
            nl = piece.find(b"\n", start)
            if nl < 0:
                return None
            if (piece.count(self.quote, 0, nl) % 2 == 1) == odd:
                return nl + 1
            start = nl + 1


async def copy_csv_file(
    path: str | os.PathLike[str],
    dsn: PgConnectionConfig | str | None = None,
    *,
    table: str,
    schema: str = "public",
    columns: list[str] | None = None,
    header: bool = True,
    delimiter: str = ",",
    quote: str = '"',
    null: str = "",
    encoding: str = "utf-8",
    pipeline: str | None = None,
    state_table: str = DEFAULT_STATE_TABLE,
    state_schema: str | None = None,
    chunk_bytes: int = 256 << 20,
    **connection: Any,
) -> CopyResult:
    """Load a CSV file into an existing table through server-side parsing.

    :param columns: the target columns in file order (default: the header's names).
    :param pipeline: store progress under this name (exactly-once resume); ``None``: the
        whole file in one transaction, no resume.
    :raises ConfigError: the file or the table is missing.
    """
    file = os.fspath(path)
    try:
        size = (await asyncio.to_thread(os.stat, file)).st_size
    except OSError:
        raise ConfigError(f"CSV file {file!r} cannot be read") from None
    config = PgConnectionConfig.coerce(dsn, **connection)
    offset = 0
    rows_before = 0
    names = columns
    if header:
        found, offset = await asyncio.to_thread(_header, file, delimiter, quote, encoding)
        names = names or found
    conn = await config.connect()
    try:
        state_schema = state_schema or schema
        if pipeline is not None:
            await ensure_state_table(conn, state_schema, state_table)
            raw = await conn.fetchval(f"SELECT position::text FROM "
                                      f"{qualified(state_schema, state_table)} "
                                      "WHERE pipeline = $1", pipeline)
            pos = Checkpoint.decode(raw).position if raw is not None else None
            if isinstance(pos, dict) and pos.get("file") == file:
                offset = max(offset, int(pos["offset"]))
                rows_before = int(pos.get("rows", 0))
        start = offset
        chunker = _Chunker(file, offset, size, chunk_bytes if pipeline else size + 1,
                           quote.encode(encoding))
        total, chunks = rows_before, 0
        while chunker.offset < size:
            async with conn.transaction():
                status = await conn.copy_to_table(
                    table, schema_name=schema, source=chunker.chunk(), columns=names,
                    format="csv", delimiter=delimiter, quote=quote, null=null,
                    encoding=encoding.upper().replace("-", ""))
                total += int(status.split()[-1])
                chunks += 1
                if pipeline is not None:
                    await write_checkpoint(conn, state_schema, state_table, pipeline, Checkpoint(
                        {"file": file, "offset": chunker.offset, "rows": total}))
        return CopyResult(total - rows_before, chunker.offset - start, start, chunks)
    finally:
        await conn.close()


def pass_through_eligible(source: object, operators: Sequence[object],
                          sinks: Sequence[object]) -> bool:
    """Whether :func:`run_pass_through` can load this: a full-refresh CSV source reading
    every column, no operator, and one :class:`PostgresSink` appending without a column map.
    (A Python API: job files run through :class:`~etlsync.Pipeline`.)"""
    from etlsync.connectors.files.csvfile import CsvSource
    from etlsync.connectors.postgres.sink import PostgresSink
    from etlsync.core.modes import SyncMode, WriteMode

    if operators or len(sinks) != 1 or not isinstance(sinks[0], PostgresSink):
        return False
    sink = sinks[0]
    if sink.write_mode is not WriteMode.APPEND or sink.column_map:
        return False
    return (isinstance(source, CsvSource) and source.columns is None
            and source.sync_mode == SyncMode.FULL_REFRESH)


async def run_pass_through(source: Any, sink: Any, *, pipeline: str) -> CopyResult:
    """Load every file of a CSV source (see :func:`pass_through_eligible`) into the sink's
    table with :func:`copy_csv_file`, in the source's file order, resuming after the last
    loaded chunk (progress under ``pipeline`` in the sink's state table)."""
    files: list[str] = await asyncio.to_thread(source.files)
    conn = await sink.config.connect()
    try:
        await ensure_state_table(conn, sink.state_schema, sink.state_table)
        raw = await conn.fetchval(
            f"SELECT position::text FROM {qualified(sink.state_schema, sink.state_table)} "
            "WHERE pipeline = $1", pipeline)
    finally:
        await conn.close()
    done = Checkpoint.decode(raw).position if raw is not None else None
    start_file = done.get("file") if isinstance(done, dict) else None
    rows = size = chunks = 0
    first_offset: int | None = None
    for path in files:
        if start_file is not None and path < start_file:
            continue
        r = await copy_csv_file(
            path, sink.config, table=sink.table, schema=sink.schema, header=source.header,
            delimiter=source.delimiter, quote=source.quotechar,
            encoding=getattr(source, "encoding", "utf-8"), pipeline=pipeline,
            state_table=sink.state_table, state_schema=sink.state_schema)
        first_offset = r.start_offset if first_offset is None else first_offset
        rows, size, chunks = rows + r.rows, size + r.bytes, chunks + r.chunks
    return CopyResult(rows, size, first_offset or 0, chunks)
