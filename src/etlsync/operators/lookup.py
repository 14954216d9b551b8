"""Lookups: rows fetched by key from a table or another source's snapshot, in batches, behind
a bounded cache with a time to live (for ``LookupJoin`` and the ``referential`` rule)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from etlsync.core.batch import Row, dict_maker
from etlsync.core.errors import ConfigError
from etlsync.core.stages import Source
from etlsync.operators._common import cap_error
from etlsync.sql.identifiers import qualified_name, quote_identifier

Key = tuple[Any, ...]
_MISSING = object()


class Lookup(ABC):
    """Finds rows by the values of ``key`` (columns of the looked-up table)."""

    key: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    """The columns fetched (``None``: all)."""

    async def open(self) -> None:
        """Connect (called once per run; again after :meth:`close`)."""

    async def close(self) -> None:
        """Release connections."""

    @abstractmethod
    async def fetch(self, keys: Sequence[Key]) -> dict[Key, Row]:
        """The rows of the keys that exist (one per key; the first found if not unique)."""


class MemoryLookup(Lookup):
    """Rows given in memory (tests, small reference lists)."""

    def __init__(self, rows: Iterable[Row], key: Sequence[str] | str) -> None:
        self.key = (key,) if isinstance(key, str) else tuple(key)
        self.rows: dict[Key, Row] = {}
        for r in rows:
            self.rows.setdefault(tuple(r.get(k) for k in self.key), r)
        self.fetches = 0

    async def fetch(self, keys: Sequence[Key]) -> dict[Key, Row]:
        self.fetches += 1
        return {k: self.rows[k] for k in keys if k in self.rows}


class SnapshotLookup(MemoryLookup):
    """Another source's snapshot: ``source`` is read to the end of its first pass when the
    run opens (at most ``max_rows`` rows, else a clear error), then served from memory."""

    def __init__(self, source: Source, key: Sequence[str] | str, *,
                 max_rows: int = 1_000_000) -> None:
        super().__init__((), key)
        self.source = source
        self.max_rows = max_rows
        self.loaded = False

    async def open(self) -> None:
        if self.loaded:
            return
        rows: dict[Key, Row] = {}
        agen = self.source.read(None)
        try:
            async for batch in agen:
                for r in batch.rows:
                    rows.setdefault(tuple(r.get(k) for k in self.key), r)
                if len(rows) > self.max_rows:
                    raise cap_error(f"snapshot lookup of {self.source!r}", len(rows),
                                    self.max_rows, "rows")
                if batch.end_of_pass:
                    break
        finally:
            await agen.aclose()  # type: ignore[attr-defined]
        self.rows, self.loaded = rows, True


def _placeholders(n_keys: int, width: int) -> str:
    one = "?" if width == 1 else "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * n_keys)


class SqliteLookup(Lookup):
    """Rows of a SQLite table, ``IN (...)`` lookups of up to ``chunk`` keys, in a thread."""

    def __init__(self, path: str, table: str, key: Sequence[str] | str, *,
                 columns: Sequence[str] | None = None, chunk: int = 500) -> None:
        self.path, self.table = path, table
        self.key = (key,) if isinstance(key, str) else tuple(key)
        self.columns = None if columns is None else tuple(columns)
        self.chunk = chunk
        self._conn: sqlite3.Connection | None = None
        self._names: list[str] = []

    async def open(self) -> None:
        if self._conn is None:
            self._conn = await asyncio.to_thread(self._connect)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False)
        cur = conn.execute(f"SELECT * FROM {quote_identifier(self.table)} LIMIT 0")
        names = [d[0] for d in cur.description]
        missing = [c for c in (*self.key, *(self.columns or ())) if c not in names]
        if missing:
            conn.close()
            raise ConfigError(f"lookup: table {self.table!r} in {self.path} has no column(s) "
                              f"{missing} (columns: {', '.join(names)})")
        self._names = list(dict.fromkeys([*self.key, *(self.columns or names)]))
        return conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)

    async def fetch(self, keys: Sequence[Key]) -> dict[Key, Row]:
        assert self._conn is not None, "SqliteLookup.fetch before open"
        return await asyncio.to_thread(self._fetch, list(keys))

    def _fetch(self, keys: list[Key]) -> dict[Key, Row]:
        conn = self._conn
        assert conn is not None
        cols = ", ".join(map(quote_identifier, self._names))
        width = len(self.key)
        target = quote_identifier(self.key[0]) if width == 1 else \
            "(" + ", ".join(map(quote_identifier, self.key)) + ")"
        found: dict[Key, Row] = {}
        step = max(1, self.chunk // width)
        for i in range(0, len(keys), step):
            part = keys[i:i + step]
            if width == 1:
                params = [k[0] for k in part]
                sql = (f"SELECT {cols} FROM {quote_identifier(self.table)} "
                       f"WHERE {target} IN ({_placeholders(len(part), 1)})")
            else:
                params = [v for k in part for v in k]
                sql = (f"SELECT {cols} FROM {quote_identifier(self.table)} "
                       f"WHERE {target} IN (VALUES {_placeholders(len(part), width)})")
            make = dict_maker(tuple(self._names))
            for rec in conn.execute(sql, params):
                found.setdefault(rec[:width], make(rec))
        return found


class PostgresLookup(Lookup):
    """Rows of a PostgreSQL table via asyncpg: one ``= ANY($1)`` (or ``unnest``) query per
    batch of keys, on a small pool. ``connection`` takes what ``PostgresSource`` takes (a
    DSN, or a mapping with ``password_env``, ``sslmode``, ...)."""

    def __init__(self, connection: Any, table: str, key: Sequence[str] | str, *,
                 schema: str | None = None, columns: Sequence[str] | None = None,
                 pool_size: int = 2) -> None:
        self.connection, self.table, self.schema = connection, table, schema
        self.key = (key,) if isinstance(key, str) else tuple(key)
        self.columns = None if columns is None else tuple(columns)
        self.pool_size = pool_size
        self._pool: Any = None
        self._sql = ""
        self._names: list[str] = []

    async def open(self) -> None:
        if self._pool is not None:
            return
        from etlsync.connectors.postgres.connection import PgConnectionConfig

        config = PgConnectionConfig.coerce(self.connection)
        pool = await config.create_pool(self.pool_size)
        try:
            types = await self._column_types(pool)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._names = list(dict.fromkeys([*self.key, *(self.columns or types)]))
        table = qualified_name(self.schema, self.table)
        cols = ", ".join(map(quote_identifier, self._names))
        if len(self.key) == 1:
            self._sql = f"SELECT {cols} FROM {table} WHERE {quote_identifier(self.key[0])} = ANY($1)"
        else:
            args = ", ".join(f"${i + 1}::{types[k]}[]" for i, k in enumerate(self.key))
            target = ", ".join(map(quote_identifier, self.key))
            self._sql = (f"SELECT {cols} FROM {table} WHERE ({target}) IN "
                         f"(SELECT * FROM unnest({args}))")

    async def _column_types(self, pool: Any) -> dict[str, str]:
        rows = await pool.fetch(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum", qualified_name(self.schema, self.table))
        types = {r[0]: r[1] for r in rows}
        if not types:
            raise ConfigError(f"lookup: PostgreSQL table {self.table!r} does not exist")
        missing = [c for c in (*self.key, *(self.columns or ())) if c not in types]
        if missing:
            raise ConfigError(f"lookup: table {self.table!r} has no column(s) {missing}")
        return types

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def fetch(self, keys: Sequence[Key]) -> dict[Key, Row]:
        assert self._pool is not None, "PostgresLookup.fetch before open"
        width = len(self.key)
        args = [[k[0] for k in keys]] if width == 1 else [list(c) for c in zip(*keys, strict=True)]
        records = await self._pool.fetch(self._sql, *args)
        found: dict[Key, Row] = {}
        make = dict_maker(tuple(self._names))
        for rec in records:
            values = tuple(rec)
            found.setdefault(values[:width], make(values))
        return found


class TtlCache:
    """At most ``size`` entries, each valid for ``ttl`` seconds (``None``: forever);
    least recently used first out. Misses are cached too (as ``None``)."""

    def __init__(self, size: int, ttl: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.ttl, self.clock = size, ttl, clock
        self._data: OrderedDict[Key, tuple[float, Row | None]] = OrderedDict()
        self.hits = self.misses = self.expired = 0

    def get(self, key: Key) -> Any:
        """The cached row, ``None`` for a cached miss, or ``_MISSING``."""
        found, _ = self.get_many([key])
        return found.get(key, _MISSING)

    def get_many(self, keys: Iterable[Key]) -> tuple[dict[Key, Row | None], list[Key]]:
        """The cached entries of ``keys`` (rows or ``None`` for cached misses), and the keys
        not cached (or expired)."""
        data, ttl = self._data, self.ttl
        oldest = None if ttl is None else self.clock() - ttl
        found: dict[Key, Row | None] = {}
        wanted: list[Key] = []
        get, touch = data.get, data.move_to_end
        for key in keys:
            entry = get(key)
            if entry is None:
                wanted.append(key)
            elif oldest is not None and entry[0] < oldest:
                del data[key]
                self.expired += 1
                wanted.append(key)
            else:
                touch(key)
                found[key] = entry[1]
        self.hits += len(found)
        self.misses += len(wanted)
        return found, wanted

    def put(self, key: Key, row: Row | None) -> None:
        self.put_many({key: row})

    def put_many(self, rows: dict[Key, Row | None]) -> None:
        data, now = self._data, self.clock()
        for key, row in rows.items():
            data[key] = (now, row)
            data.move_to_end(key)
        while len(data) > self.size:
            data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


async def resolve(lookup: Lookup, cache: TtlCache | None, keys: Iterable[Key]
                  ) -> dict[Key, Row | None]:
    """The row of every key (``None``: no such key): cached ones from ``cache``, the rest
    in one batched fetch."""
    distinct = [k for k in dict.fromkeys(keys) if None not in k]  # NULL never matches
    if cache is None:
        out: dict[Key, Row | None] = {}
        wanted = distinct
    else:
        out, wanted = cache.get_many(distinct)
    if wanted:
        found = await lookup.fetch(wanted)
        fetched = {k: found.get(k) for k in wanted}
        out.update(fetched)
        if cache is not None:
            cache.put_many(fetched)
    return out
