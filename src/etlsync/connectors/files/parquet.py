"""Parquet files as a source and a sink, through pyarrow (the ``parquet`` extra)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from etlsync.connectors.files._common import FileSink, FileSource, Unit
from etlsync.core.arrow import import_pyarrow
from etlsync.core.batch import Row
from etlsync.core.errors import ConfigError, DataError, SchemaError
from etlsync.core.modes import SyncMode, WriteMode
from etlsync.core.schema import Column, ColumnType, Schema


def _pyarrow() -> tuple[Any, Any]:
    pa = import_pyarrow("Parquet")
    import pyarrow.parquet as pq

    return pa, pq


def arrow_column_type(pa: Any, t: Any) -> ColumnType:
    """The logical type of an arrow data type."""
    types = pa.types
    checks = [
        (types.is_boolean, ColumnType.BOOLEAN), (types.is_integer, ColumnType.INTEGER),
        (types.is_floating, ColumnType.FLOAT), (types.is_decimal, ColumnType.DECIMAL),
        (types.is_string, ColumnType.STRING), (types.is_large_string, ColumnType.STRING),
        (types.is_binary, ColumnType.BYTES), (types.is_large_binary, ColumnType.BYTES),
        (types.is_date, ColumnType.DATE), (types.is_time, ColumnType.TIME),
        (types.is_duration, ColumnType.INTERVAL), (types.is_struct, ColumnType.JSON),
        (types.is_list, ColumnType.JSON), (types.is_map, ColumnType.JSON),
    ]
    if types.is_timestamp(t):
        return ColumnType.TIMESTAMP if t.tz else ColumnType.DATETIME
    for check, ct in checks:
        if check(t):
            return ct
    return ColumnType.UNKNOWN


class ParquetSource(FileSource):
    """Rows of Parquet files (a file or a glob in sorted order), one record batch at a time.

    Values come as pyarrow converts them to Python (``Decimal``, ``datetime``, ``date``,
    ``bytes``, lists and dicts). Positions are row indexes, so a resumed read starts at the
    first row not committed. ``sync_mode``, ``cursor_field`` and ``primary_key`` as for
    :class:`~etlsync.connectors.files.CsvSource`.

    :param columns: read only these columns.
    """

    name = "parquet"
    row_offsets = True

    def __init__(self, path: str | os.PathLike[str], *, stream: str | None = None,
                 batch_size: int = 10_000, columns: Sequence[str] | None = None,
                 sync_mode: SyncMode | str = SyncMode.FULL_REFRESH,
                 cursor_field: str | None = None, primary_key: Sequence[str] = (),
                 cursor_type: ColumnType | str | None = None) -> None:
        super().__init__(path, stream=stream, batch_size=batch_size, sync_mode=sync_mode,
                         cursor_field=cursor_field, primary_key=primary_key,
                         cursor_type=cursor_type)
        self.columns = list(columns) if columns is not None else None
        _pyarrow()

    def _units(self, path: str, start: int) -> Iterator[Unit]:
        _, pq = _pyarrow()
        with pq.ParquetFile(path) as f:
            md = f.metadata
            rg, at = 0, 0
            while rg < md.num_row_groups and at + md.row_group(rg).num_rows <= start:
                at += md.row_group(rg).num_rows
                rg += 1
            if rg >= md.num_row_groups:
                return
            groups = list(range(rg, md.num_row_groups))
            for rb in f.iter_batches(batch_size=self.batch_size, row_groups=groups,
                                     columns=self.columns):
                n = rb.num_rows
                if at + n <= start:
                    at += n
                    continue
                if at < start:
                    rb = rb.slice(start - at)
                    at = start
                    n = rb.num_rows
                yield Unit(at, at + n, rb.to_pylist())
                at += n

    async def discover(self) -> dict[str, Schema]:
        pa, pq = _pyarrow()
        schema = pq.read_schema(self.files()[0])
        cols = tuple(Column(f.name, arrow_column_type(pa, f.type), f.nullable, str(f.type))
                     for f in schema if self.columns is None or f.name in self.columns)
        return {self.stream: Schema(cols, tuple(self.primary_key))}


def _arrow_type(pa: Any, ct: ColumnType) -> Any:
    return {
        ColumnType.INTEGER: pa.int64(), ColumnType.FLOAT: pa.float64(),
        ColumnType.STRING: pa.string(), ColumnType.BOOLEAN: pa.bool_(),
        ColumnType.DATE: pa.date32(), ColumnType.TIME: pa.time64("us"),
        ColumnType.DATETIME: pa.timestamp("us"), ColumnType.TIMESTAMP: pa.timestamp("us", "UTC"),
        ColumnType.BYTES: pa.binary(), ColumnType.INTERVAL: pa.duration("us"),
        ColumnType.UUID: pa.string(),
    }.get(ct)


class ParquetSink(FileSink):
    """Writes rows to one Parquet file. The arrow schema comes from the batch's schema where
    it names a type, otherwise from the first rows; a later row with another column raises
    :class:`SchemaError`.

    A Parquet file is readable only once complete, so this sink always writes a temporary
    file and renames it over the target when the pass is complete (the end-of-pass marker of
    a file or SQLite source, or ``close`` after error-free writes for other sources); it
    holds the batches' checkpoint tickets until then. ``append`` copies the existing file's
    row groups first (the schemas must match); ``overwrite`` starts empty.

    :param row_group_size: rows per row group (rows are buffered in arrow form until then).
    """

    name = "parquet"
    replace_on_finish = True

    def __init__(self, path: str | os.PathLike[str], *,
                 write_mode: WriteMode | str = WriteMode.APPEND, row_group_size: int = 100_000,
                 compression: str = "snappy") -> None:
        super().__init__(path, write_mode)
        if row_group_size < 1:
            raise ConfigError(f"row_group_size must be >= 1, got {row_group_size}")
        self.row_group_size = row_group_size
        self.compression = compression
        self._pa, self._pq = _pyarrow()
        self._writer: Any = None
        self._schema: Any = None
        self._buffer: list[Any] = []
        self._buffered = 0
        self._batch_schema: Schema | None = None

    def _open_sync(self) -> None:
        self._writer, self._schema, self._buffer, self._buffered = None, None, [], 0
        if self.write_mode == WriteMode.APPEND and os.path.exists(self.path):
            with self._pq.ParquetFile(self.path) as old:
                self._start(old.schema_arrow)
                for i in range(old.metadata.num_row_groups):
                    self._writer.write_table(old.read_row_group(i))

    def _start(self, schema: Any) -> None:
        self._schema = schema
        self._writer = self._pq.ParquetWriter(self.target_path, schema,
                                              compression=self.compression)

    def _infer(self, rows: list[Row]) -> Any:
        pa = self._pa
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r))
        fields = []
        sample = pa.Table.from_pylist(rows)
        for name in names:
            t = None
            if self._batch_schema is not None and name in self._batch_schema:
                t = _arrow_type(pa, self._batch_schema.column(name).type)
            if t is None:
                t = sample.schema.field(name).type
                if pa.types.is_null(t):
                    t = pa.string()
                elif pa.types.is_decimal(t):
                    t = pa.decimal128(38, t.scale)  # later rows may be wider
            fields.append(pa.field(name, t))
        return pa.schema(fields)

    def _write_sync(self, rows: list[Row], durable: bool) -> None:
        pa = self._pa
        if self._writer is None:
            self._start(self._infer(rows))
        known = set(self._schema.names)
        for r in rows:
            if not known.issuperset(r):
                extra = [k for k in r if k not in known]
                raise SchemaError(f"ParquetSink({self.path!r}): column {extra[0]!r} is not in "
                                  f"the file's schema {self._schema.names}")
        try:
            table = pa.Table.from_pylist(rows, schema=self._schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"ParquetSink({self.path!r}): {exc}") from exc
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.row_group_size:
            self._flush_buffer()

    def _flush_buffer(self) -> None:
        if not self._buffer:
            return
        table = self._pa.concat_tables(self._buffer)
        self._buffer, self._buffered = [], 0
        self._writer.write_table(table, row_group_size=self.row_group_size)

    def _close_sync(self) -> None:
        if self._writer is not None:
            self._flush_buffer()
            self._writer.close()
            self._writer = None
            with open(self.target_path, "rb+") as f:
                os.fsync(f.fileno())

    async def write(self, batch: Any) -> None:
        if batch.schema is not None:
            self._batch_schema = batch.schema
        await super().write(batch)
