"""The arrow engine of :class:`~etlsync.connectors.files.CsvSource`: one chunk of whole CSV
records parsed by ``pyarrow.csv`` into a table of string columns, or ``None`` where the
Python parser must decide (so both engines always give the same values and errors)."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Sequence
from typing import Any

from etlsync.core.arrow import import_pyarrow

ARROW_CHUNK_BYTES = 1 << 20
"""Bytes read at a time by the arrow engine (fewer, larger parser calls)."""

_BOM = codecs.BOM_UTF8
_UTF8 = ("utf-8", "utf-8-sig")


def load_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.csv)``, or a ConfigError naming the option and the fix."""
    pa = import_pyarrow("CsvSource: engine='arrow'", "use engine='python'")
    import pyarrow.csv as pacsv

    return pa, pacsv


def _plain(ch: str) -> bool:
    return ch.isascii() and ch not in "\r\n\0"


class ArrowChunkParser:
    """Parses chunks with ``pyarrow.csv.read_csv`` where it agrees with the csv module.

    Arrow's parser (double quotes, no escape character, empty lines skipped, newlines in
    quoted values) reads what the csv module's default dialect reads. Where it could differ
    or cannot say, :meth:`parse` returns ``None`` and the caller parses the chunk with the
    csv module: a record of another width (arrow raises; the csv module names the record),
    bytes that are not UTF-8, a BOM at the start of the data (arrow drops it, the csv
    module keeps it), a field longer than ``csv.field_size_limit()``.
    """

    def __init__(self, delimiter: str, quotechar: str, encoding: str) -> None:
        self.pa, self.pacsv = load_pyarrow()
        self.usable = (codecs.lookup(encoding).name in _UTF8 and _plain(delimiter)
                       and _plain(quotechar) and delimiter != quotechar)
        """False when the dialect or encoding is one only the csv module reads."""
        self._parse = self.pacsv.ParseOptions(
            delimiter=delimiter, quote_char=quotechar, double_quote=True, escape_char=False,
            newlines_in_values=True, ignore_empty_lines=True) if self.usable else None

    def parse(self, data: bytes, width: int, names: Sequence[str],
              index: Sequence[int] | None) -> Any:
        """The table of ``data`` (whole records of ``width`` fields), its columns
        ``names`` (fields ``index`` of each record, or all), or ``None``."""
        if not data or width < 1 or data.startswith(_BOM):
            return None
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return None  # the csv path raises the DataError naming the byte
        pa = self.pa
        fields = [f"f{i}" for i in range(width)]
        keep = [fields[i] for i in index] if index is not None else fields
        convert = self.pacsv.ConvertOptions(
            column_types={f: pa.string() for f in keep}, include_columns=keep,
            strings_can_be_null=False, quoted_strings_can_be_null=False, null_values=[])
        read = self.pacsv.ReadOptions(use_threads=False, column_names=fields,
                                      block_size=len(data) + 1)
        try:
            table = self.pacsv.read_csv(io.BytesIO(data), read_options=read,
                                        parse_options=self._parse, convert_options=convert)
        except pa.ArrowException:
            return None
        if len(data) > csv.field_size_limit() and self._too_long(table):
            return None  # the csv module refuses such a field: let it say so
        return table.rename_columns(list(names))

    def _too_long(self, table: Any) -> bool:
        import pyarrow.compute as pc

        limit = csv.field_size_limit()
        for column in table.columns:
            longest = pc.max(pc.binary_length(column)).as_py()
            if longest is not None and longest > limit:
                return True
        return False


class CountingLines:
    """The lines of a text (as ``io.StringIO(text, newline="")`` splits them), counting the
    characters handed out: where a csv reader's last record ended."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self.used = 0

    def __iter__(self) -> CountingLines:
        return self

    def __next__(self) -> str:
        line = self._lines.readline()
        if not line:
            raise StopIteration
        self.used += len(line)
        return line


def body_start(chunk: bytes, text: str, used: int) -> int:
    """The byte offset in ``chunk`` (UTF-8, decoded to ``text``) of character ``used``."""
    bom = len(_BOM) if chunk.startswith(_BOM) and not text.startswith("\ufeff") else 0
    return bom + len(text[:used].encode("utf-8"))
