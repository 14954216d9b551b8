"""File connectors: CSV, JSON Lines and Parquet (the ``parquet`` extra) sources and sinks.

Sources read a file or a glob in sorted path order, a chunk at a time, and resume inside a
file from the last committed batch; see docs/connectors/files.md.
"""

from etlsync.connectors.files import csvfile
from etlsync.connectors.files.csvfile import CsvSink, CsvSource
from etlsync.connectors.files.jsonl import JsonlSink, JsonlSource
from etlsync.connectors.files.parquet import ParquetSink, ParquetSource

__all__ = [
    "CsvSink", "CsvSource", "JsonlSink", "JsonlSource", "ParquetSink", "ParquetSource",
    "csvfile",
]
