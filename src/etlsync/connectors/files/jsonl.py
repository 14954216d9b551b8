"""JSON Lines files (one JSON object per line) as a source and a sink."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import IO, Any

import msgspec

from etlsync.connectors.files._common import FileSink, FileSource, Unit
from etlsync.connectors.files.csvfile import _check_encoding, read_chunks
from etlsync.core.batch import Row
from etlsync.core.errors import DataError
from etlsync.core.modes import SyncMode, WriteMode
from etlsync.core.schema import Column, ColumnType, Schema

_TYPES: dict[type, ColumnType] = {
    bool: ColumnType.BOOLEAN, int: ColumnType.INTEGER, float: ColumnType.FLOAT,
    str: ColumnType.STRING, dict: ColumnType.JSON, list: ColumnType.JSON,
}


def _line_cut(buf: bytes) -> int:
    return buf.rfind(b"\n") + 1


class JsonlSource(FileSource):
    """Rows of JSON Lines files (a file or a glob in sorted order), in constant memory.

    Each non-blank line must be a JSON object; values keep their JSON types (numbers, strings,
    booleans, null, nested objects and arrays). Resumes inside a file from the last committed
    batch. ``sync_mode``, ``cursor_field`` and ``primary_key`` as for
    :class:`~etlsync.connectors.files.CsvSource`.
    """

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str], *, stream: str | None = None,
                 batch_size: int = 10_000, encoding: str = "utf-8",
                 sync_mode: SyncMode | str = SyncMode.FULL_REFRESH,
                 cursor_field: str | None = None, primary_key: Sequence[str] = (),
                 cursor_type: ColumnType | str | None = None) -> None:
        super().__init__(path, stream=stream, batch_size=batch_size, sync_mode=sync_mode,
                         cursor_field=cursor_field, primary_key=primary_key,
                         cursor_type=cursor_type)
        self.encoding = _check_encoding(encoding)
        self._decoder = msgspec.json.Decoder()

    def _units(self, path: str, start: int) -> Iterator[Unit]:
        decode = self._decoder.decode
        utf8 = self.encoding.replace("-", "").replace("_", "").lower() in ("utf8", "ascii")
        for offset, chunk in read_chunks(path, start, _line_cut):
            rows: list[Row] = []
            at = offset
            for line in chunk.split(b"\n"):
                n = len(line) + 1
                if line.strip():
                    try:
                        value = decode(line if utf8 else line.decode(self.encoding).encode())
                    except (msgspec.DecodeError, UnicodeError) as exc:
                        raise DataError(f"{path}: byte {at}: invalid JSON line: {exc}") from exc
                    if not isinstance(value, dict):
                        raise DataError(f"{path}: byte {at}: expected a JSON object, got "
                                        f"{type(value).__name__}", value=value)
                    rows.append(value)
                at += n
            yield Unit(offset, offset + len(chunk), rows)

    async def discover(self) -> dict[str, Schema]:
        cols: dict[str, ColumnType] = {}
        for path in self.files()[:1]:
            for unit in self._units(path, 0):
                for row in unit.rows[:1000]:
                    for k, v in row.items():
                        if cols.get(k) in (None, ColumnType.UNKNOWN):
                            cols[k] = _TYPES.get(type(v), ColumnType.UNKNOWN)
                break
        return {self.stream: Schema(tuple(Column(k, t) for k, t in cols.items()),
                                    tuple(self.primary_key))}


def _enc_hook(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise NotImplementedError(f"cannot write {type(value).__name__} to JSON: {value!r}")


class JsonlSink(FileSink):
    """Writes rows as JSON Lines. Decimals and UUIDs become strings, dates and times ISO 8601
    strings, bytes base64.

    :param write_mode: ``append`` (durable per batch) or ``overwrite`` (atomic replacement
        once the pass is complete).
    """

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str], *,
                 write_mode: WriteMode | str = WriteMode.APPEND) -> None:
        super().__init__(path, write_mode)
        self._file: IO[bytes] | None = None
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook, decimal_format="string")

    def _open_sync(self) -> None:
        self._file = open(self.target_path, "wb" if self._temp else "ab")  # noqa: SIM115

    def _write_sync(self, rows: list[Row], durable: bool) -> None:
        assert self._file is not None
        try:
            self._file.write(self._encoder.encode_lines(rows))
        except (TypeError, NotImplementedError) as exc:
            raise DataError(f"JsonlSink({self.path!r}): {exc}") from exc
        if durable:
            self._file.flush()
            os.fsync(self._file.fileno())

    def _close_sync(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
