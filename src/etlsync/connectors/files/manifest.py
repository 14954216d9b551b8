"""The files family: CSV, JSON Lines and Parquet sources and sinks (docs/connectors/files.md)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import Meta

from etlsync.core.capabilities import Capability
from etlsync.manifest import Kind, Manifest, Options, StageType

SyncMode = Literal["full_refresh", "incremental"]
FileWriteMode = Literal["append", "overwrite"]
CursorType = Literal["string", "integer", "float", "decimal", "date", "datetime", "timestamp"]


class FileSourceOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("path",)
    paths: ClassVar[tuple[str, ...]] = ("path",)

    path: Annotated[str, Meta(description="A file, or a glob read in sorted path order")]
    stream: Annotated[str | None, Meta(
        description="Stream name (default: the file's stem, or the glob's directory)")] = None
    batch_size: Annotated[int, Meta(ge=1, description="Rows per batch")] = 10_000
    sync_mode: Annotated[SyncMode, Meta(
        description="full_refresh reads every file each pass; incremental filters on "
                    "cursor_field")] = "full_refresh"
    cursor_field: Annotated[str | None, Meta(
        description="Incremental: the column whose values only grow")] = None
    primary_key: Annotated[list[str], Meta(
        description="Tells rows with equal cursor values apart")] = []
    cursor_type: Annotated[CursorType | None, Meta(
        description="Incremental: convert cursor values to this type before comparing")] = None


class CsvSourceOptions(FileSourceOptions, kw_only=True):
    delimiter: Annotated[str, Meta(min_length=1, max_length=1, description="Field separator")] = ","
    quotechar: Annotated[str, Meta(min_length=1, max_length=1, description="Quote character")] = '"'
    encoding: Annotated[str, Meta(description="Text encoding")] = "utf-8"
    header: Annotated[bool, Meta(description="The first line names the columns")] = True
    columns: Annotated[list[str] | None, Meta(
        description="Column names (required without a header; else a subset to read)")] = None
    engine: Annotated[Literal["python", "arrow"], Meta(
        description="python (no dependency) or arrow (pyarrow parses whole chunks)")] = "python"


class JsonlSourceOptions(FileSourceOptions, kw_only=True):
    encoding: Annotated[str, Meta(description="Text encoding")] = "utf-8"


class ParquetSourceOptions(FileSourceOptions, kw_only=True):
    columns: Annotated[list[str] | None, Meta(description="Columns to read (default: all)")] = None


class FileSinkOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("path",)
    paths: ClassVar[tuple[str, ...]] = ("path",)

    path: Annotated[str, Meta(description="The file to write")]
    write_mode: Annotated[FileWriteMode, Meta(
        description="append, or overwrite (a temporary file renamed over the target at the "
                    "end of the pass)")] = "append"


class CsvSinkOptions(FileSinkOptions, kw_only=True):
    delimiter: Annotated[str, Meta(min_length=1, max_length=1, description="Field separator")] = ","
    encoding: Annotated[str, Meta(description="Text encoding")] = "utf-8"
    header: Annotated[bool, Meta(description="Write a header line")] = True


class ParquetSinkOptions(FileSinkOptions, kw_only=True):
    row_group_size: Annotated[int, Meta(ge=1, description="Rows per row group")] = 100_000
    compression: Annotated[str, Meta(description="snappy, zstd, gzip, ... or none")] = "snappy"


class JsonlDeadLetterOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("path",)
    paths: ClassVar[tuple[str, ...]] = ("path",)

    path: Annotated[str, Meta(description="The JSON Lines file dead letters are appended to")]
    fsync: Annotated[bool, Meta(description="fsync after each write (durable letters)")] = True


_SOURCE = frozenset({Capability.PASSES})

MANIFEST = Manifest(
    family="files",
    summary="CSV, JSON Lines and Parquet files (globs, resumable, atomic overwrite)",
    stages=(
        StageType(Kind.SOURCE, "csv", "etlsync.connectors.files.csvfile:CsvSource",
                  CsvSourceOptions, "Rows of CSV files", _SOURCE),
        StageType(Kind.SOURCE, "jsonl", "etlsync.connectors.files.jsonl:JsonlSource",
                  JsonlSourceOptions, "Objects of JSON Lines files", _SOURCE),
        StageType(Kind.SOURCE, "parquet", "etlsync.connectors.files.parquet:ParquetSource",
                  ParquetSourceOptions, "Rows of Parquet files", _SOURCE, extra="parquet"),
        StageType(Kind.SINK, "csv", "etlsync.connectors.files.csvfile:CsvSink",
                  CsvSinkOptions, "A CSV file"),
        StageType(Kind.SINK, "jsonl", "etlsync.connectors.files.jsonl:JsonlSink",
                  FileSinkOptions, "A JSON Lines file"),
        StageType(Kind.SINK, "parquet", "etlsync.connectors.files.parquet:ParquetSink",
                  ParquetSinkOptions, "A Parquet file", extra="parquet"),
        StageType(Kind.DEAD_LETTER, "jsonl", "etlsync.resilience.deadletter:JsonlDeadLetterSink",
                  JsonlDeadLetterOptions, "Dead letters in a JSON Lines file"),
    ),
)
