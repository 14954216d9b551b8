"""The rows of one COPY, column by column, whichever form the batch came in, and the COPY
itself (text where every column renders exactly, else asyncpg's binary encoding)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from operator import itemgetter
from typing import Any

import asyncpg

from etlsync.connectors.postgres.arrowcopy import copy_arrow
from etlsync.connectors.postgres.copytext import encode_columns, renderable
from etlsync.core.batch import Row


def _json_default(value: Any) -> Any:
    return str(value)


class Rows:
    """Rows to COPY: dicts (dict-form batches, CDC groups), the value columns of a
    record-form batch (transposed once, never turned into dicts) or an arrow table (COPYed
    as pyarrow's CSV where exact, see :mod:`~etlsync.connectors.postgres.arrowcopy`)."""

    __slots__ = ("_cache", "_columns", "_dicts", "_index", "_records", "table")

    def __init__(self, dicts: Sequence[Row] | None = None, *,
                 names: Sequence[str] = (), records: Sequence[Sequence[Any]] | None = None,
                 table: Any = None) -> None:
        self._dicts = dicts
        self._records = records
        self.table = table
        self._index = {n: i for i, n in enumerate(names)}
        self._columns: list[Sequence[Any]] | None = None
        self._cache: dict[str, list[Any]] = {}

    @classmethod
    def of(cls, rows: Sequence[Row] | Rows) -> Rows:
        return rows if isinstance(rows, Rows) else cls(rows)

    def __len__(self) -> int:
        if self._dicts is not None:
            return len(self._dicts)
        if self.table is not None:
            return int(self.table.num_rows)
        assert self._records is not None
        return len(self._records)

    def column(self, name: str) -> Sequence[Any]:
        """The values of source column ``name`` (``None`` where a row lacks it)."""
        if self._dicts is not None:
            got = self._cache.get(name)
            if got is None:
                rows = self._dicts
                try:
                    got = list(map(itemgetter(name), rows))
                except KeyError:
                    got = [r.get(name) for r in rows]
                self._cache[name] = got
            return got
        i = self._index.get(name)
        if i is None:
            return [None] * len(self)
        if self.table is not None:
            got = self._cache.get(name)
            if got is None:
                got = self._cache[name] = self.table.column(name).to_pylist()
            return got
        if self._columns is None:
            assert self._records is not None
            self._columns = list(zip(*self._records, strict=True)) or [
                () for _ in self._index]
        return self._columns[i]

    def columns(self, names: Sequence[str], json_positions: Sequence[int] = ()
                ) -> list[Sequence[Any]]:
        """The columns ``names``; values of JSON columns that are not strings serialised."""
        out = [self.column(n) for n in names]
        for i in json_positions:
            out[i] = [v if v is None or isinstance(v, str)
                      else json.dumps(v, default=_json_default) for v in out[i]]
        return out


COPY_CHUNK_ROWS = 2_000
"""Rows rendered per COPY data chunk: the server parses one chunk while the next renders."""


async def copy_rows(conn: asyncpg.Connection, table: str, schema: str | None,
                    pairs: Sequence[tuple[str, str]], rows: Rows, natives: Sequence[str] | None,
                    json_positions: Sequence[int] = ()) -> None:
    """COPY ``rows`` (source column -> target column ``pairs``) into ``table``: as COPY text
    when ``natives`` (the target types) are given and every column renders exactly (see
    :mod:`~etlsync.connectors.postgres.copytext`), else with asyncpg's binary encoding.

    The text is rendered and sent in chunks of :data:`COPY_CHUNK_ROWS` rows, so the server
    parses each chunk while the next one renders. When a later chunk does not render, the
    text COPY ends after the chunks sent and the remaining rows follow in a binary COPY
    (in the caller's transaction: the same rows land either way). An arrow table goes as
    one CSV COPY when every column renders exactly (:func:`copy_arrow`)."""
    if rows.table is not None and natives is not None and await copy_arrow(
            conn, table, schema, pairs, rows.table, natives):
        return
    targets = [t for _, t in pairs]
    columns = rows.columns([s for s, _ in pairs], json_positions)
    n = len(columns[0]) if columns else 0
    sent = 0
    if natives is not None and n and renderable(natives):
        step = COPY_CHUNK_ROWS
        first = encode_columns([c[:step] for c in columns] if n > step else columns, natives)
        if first is not None:
            sent = min(step, n)

            async def chunks() -> AsyncIterator[bytes]:
                nonlocal sent
                yield first
                while sent < n:
                    data = encode_columns([c[sent:sent + step] for c in columns], natives)
                    if data is None:
                        return  # the rest goes binary
                    yield data
                    sent = min(sent + step, n)

            await conn.copy_to_table(table, schema_name=schema, columns=targets,
                                     source=chunks(), format="text")
    if sent < n:
        rest = columns if not sent else [c[sent:] for c in columns]
        await conn.copy_records_to_table(table, schema_name=schema, columns=targets,
                                         records=list(zip(*rest, strict=True)))
