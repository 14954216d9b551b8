"""PostgreSQL source: chunked, resumable snapshots by keyset pagination on the primary key, and
incremental reads with the cursor predicate pushed down; several tables in parallel over a
bounded connection pool."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from etlsync.connectors.postgres.connection import PgConnectionConfig, qualified, quote_ident
from etlsync.connectors.postgres.types import describe_query, describe_table
from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.incremental import Watermark
from etlsync.core.modes import SyncMode
from etlsync.core.options import renamed_keywords
from etlsync.core.schema import Schema
from etlsync.core.stages import Source
from etlsync.log import get_logger

_DONE = object()
"""Position key shared with the file sources: ``True`` on the last (empty) batch of a pass,
so sinks that replace their target know the new data set is complete."""


@dataclass(slots=True)
class _Stream:
    name: str
    schema: str
    table: str | None
    query: str | None
    primary_key: tuple[str, ...]
    cursor_field: str | None
    columns: Schema | None = None

    @property
    def relation(self) -> str:
        if self.query is not None:
            return f"({self.query}) AS q"
        assert self.table is not None
        return qualified(self.schema, self.table)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog", format="text")


def _row_gt(cols: Sequence[str], first_param: int) -> str:
    names = ", ".join(quote_ident(c) for c in cols)
    params = ", ".join(f"${first_param + i}" for i in range(len(cols)))
    return f"({names}) > ({params})" if len(cols) > 1 else f"{names} > {params}"


class PostgresSource(Source):
    """Reads tables (or one SELECT) from PostgreSQL.

    :param connection: a ``postgresql://`` URI, a :class:`PgConnectionConfig`, or a mapping
        of its fields (``host``, ``password_env``, ``sslmode``, ...); further connection
        keywords are accepted too.
    :param table: one table (taken literally); ``tables``: several (``"name"`` or
        ``"schema.name"``), read in
        parallel over at most ``pool_size`` connections. ``query``: a SELECT (stream
        ``stream``, default ``"query"``); give ``primary_key`` to make it resumable.
    :param sync_mode: ``full_refresh`` (a snapshot in chunks of ``batch_size`` by keyset
        pagination on the primary key; a resumed run continues after the last committed
        chunk) or ``incremental`` (rows with ``cursor_field >= watermark``, ties handled by
        :class:`~etlsync.core.incremental.Watermark`).
    :param poll_interval: incremental only: keep polling every so many seconds instead of
        ending once caught up.

    The position is cumulative: ``{"streams": {name: progress}}``. After every stream is
    read, an empty batch marks the end of the pass (``PASSES``): an overwrite sink swaps its
    new table in there, and the next run of a full refresh starts a new pass.
    A table without a primary key (and none given) is paged by ``ctid``.
    """

    @renamed_keywords({"dsn": "connection"})
    def __init__(
        self,
        connection: PgConnectionConfig | str | Mapping[str, Any] | None = None,
        *,
        table: str | None = None,
        tables: Sequence[str] | None = None,
        query: str | None = None,
        stream: str = "query",
        schema: str = "public",
        batch_size: int = 10_000,
        sync_mode: SyncMode | str = SyncMode.FULL_REFRESH,
        cursor_field: str | None = None,
        primary_key: Sequence[str] = (),
        pool_size: int = 4,
        poll_interval: float | None = None,
        name: str = "postgres",
        **connect_kw: Any,
    ) -> None:
        self.config = PgConnectionConfig.coerce(connection, **connect_kw)
        try:
            self.sync_mode = SyncMode(sync_mode)
        except ValueError as exc:
            raise ConfigError(f"PostgresSource: {exc}") from None
        if self.sync_mode is SyncMode.CDC:
            raise ConfigError("PostgresSource reads snapshots and incremental syncs; use the "
                              "PostgreSQL CDC source for sync_mode='cdc'")
        if self.sync_mode is SyncMode.INCREMENTAL and not cursor_field:
            raise ConfigError("PostgresSource: sync_mode='incremental' needs cursor_field")
        names = [(table, schema, table)] if table else []
        for n in tables or []:  # "name" or "schema.name"
            sch, _, tab = n.rpartition(".") if "." in n else (schema, "", n)
            names.append((n, sch or schema, tab))
        if bool(names) == bool(query):
            raise ConfigError("PostgresSource: give table/tables or query (exactly one)")
        if batch_size < 1 or pool_size < 1:
            raise ConfigError("PostgresSource: batch_size and pool_size must be >= 1")
        self.streams: list[_Stream] = [
            _Stream(n, sch, tab, None, tuple(primary_key), cursor_field) for n, sch, tab in names]
        if query:
            self.streams.append(_Stream(stream, schema, None, query, tuple(primary_key),
                                        cursor_field))
        self.batch_size = batch_size
        self.pool_size = pool_size
        self.poll_interval = poll_interval
        self.name = name
        self.log = get_logger(source=name)

    async def discover(self) -> dict[str, Schema]:
        conn = await self.config.connect()
        try:
            return {s.name: await self._describe(conn, s) for s in self.streams}
        finally:
            await conn.close()

    async def _describe(self, conn: asyncpg.Connection, s: _Stream) -> Schema:
        if s.query is not None:
            found: Schema | None = await describe_query(conn, s.query, s.primary_key)
        else:
            assert s.table is not None
            found = await describe_table(conn, s.schema, s.table)
            if found is None:
                raise ConfigError(f"table {s.schema}.{s.table} does not exist")
        assert found is not None
        if s.primary_key:
            missing = [k for k in s.primary_key if k not in found]
            if missing:
                raise ConfigError(f"stream {s.name!r}: primary_key columns {missing} not found")
            found = Schema(found.columns, s.primary_key)
        if s.cursor_field and s.cursor_field not in found:
            raise ConfigError(f"stream {s.name!r}: cursor_field {s.cursor_field!r} not found")
        return found

    # -- reading -----------------------------------------------------------------------
    capabilities = frozenset({Capability.PASSES})

    def next_pass(self, position: Any) -> Any | None:
        """A full refresh starts over; an incremental pass keeps every stream's watermark."""
        if self.sync_mode is SyncMode.INCREMENTAL:
            return position
        return None

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        progress: dict[str, Any] = dict((position or {}).get("streams", {}))
        pool = await self.config.create_pool(self.pool_size)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.pool_size)
        tasks: list[asyncio.Task[None]] = []
        try:
            async with pool.acquire() as conn:
                for s in self.streams:
                    s.columns = await self._describe(conn, s)
            slots = asyncio.Semaphore(self.pool_size)
            for s in self.streams:
                tasks.append(asyncio.create_task(
                    self._worker(pool, slots, s, progress.get(s.name), queue)))
            running = len(tasks)
            while running:
                item = await queue.get()
                if item is _DONE:
                    running -= 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                stream, rows, state = item
                progress[stream.name] = state
                yield Batch(rows, stream=stream.name, schema=stream.columns,
                            position={"streams": dict(progress)})
            yield Batch([], stream=self.streams[-1].name, position={"streams": dict(progress)},
                        end_of_pass=True)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, asyncpg.PostgresError, OSError):
                pool.terminate()

    async def _worker(self, pool: asyncpg.Pool, slots: asyncio.Semaphore, s: _Stream,
                      state: Any, queue: asyncio.Queue[Any]) -> None:
        try:
            async with slots, pool.acquire() as conn:
                await _init_connection(conn)
                if self.sync_mode is SyncMode.INCREMENTAL:
                    await self._incremental(conn, s, state, queue)
                else:
                    await self._snapshot(conn, s, state, queue)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
            await queue.put(exc)
        await queue.put(_DONE)

    def _select(self, s: _Stream) -> str:
        assert s.columns is not None
        return f"SELECT {', '.join(quote_ident(c) for c in s.columns.names)} FROM {s.relation}"

    async def _snapshot(self, conn: asyncpg.Connection, s: _Stream, state: Any,
                        queue: asyncio.Queue[Any]) -> None:
        assert s.columns is not None
        state = state or {}
        if state.get("done"):
            return
        pk = s.columns.primary_key
        n = self.batch_size
        if not pk and s.query is not None:
            await self._unkeyed_query(conn, s, queue)
            return
        order = ", ".join(quote_ident(c) for c in pk) if pk else "ctid"
        base = self._select(s)
        if not pk:
            base = base.replace("SELECT ", "SELECT ctid::text AS \"__ctid\", ", 1)
        first = f"{base} ORDER BY {order} LIMIT {n}"
        after = (f"{base} WHERE {_row_gt(pk, 1)} ORDER BY {order} LIMIT {n}" if pk
                 else f"{base} WHERE ctid > $1::text::tid ORDER BY ctid LIMIT {n}")
        last = state.get("last")
        while True:
            recs = await (conn.fetch(first) if last is None else conn.fetch(after, *last))
            if not recs:
                await queue.put((s, [], {"phase": "snapshot", "last": last, "done": True}))
                return
            if pk:
                last = [recs[-1][k] for k in pk]
                rows: list[Row] = [dict(r) for r in recs]
            else:
                last = [recs[-1]["__ctid"]]
                rows = [dict(r) for r in recs]
                for r in rows:
                    del r["__ctid"]
            done = len(recs) < n
            await queue.put((s, rows, {"phase": "snapshot", "last": last, "done": done}))
            if done:
                return

    async def _unkeyed_query(self, conn: asyncpg.Connection, s: _Stream,
                             queue: asyncio.Queue[Any]) -> None:
        """A SELECT without a key: one server-side cursor; a crash restarts it."""
        self.log.warning("query stream has no primary_key: a resumed run re-reads it",
                         stream=s.name)
        async with conn.transaction(readonly=True):
            cur = await conn.cursor(s.query)
            while True:
                recs = await cur.fetch(self.batch_size)
                done = len(recs) < self.batch_size
                await queue.put((s, [dict(r) for r in recs],
                                 {"phase": "snapshot", "last": None, "done": done}))
                if done:
                    return

    async def _incremental(self, conn: asyncpg.Connection, s: _Stream, state: Any,
                           queue: asyncio.Queue[Any]) -> None:
        assert s.columns is not None and s.cursor_field is not None
        pk = s.columns.primary_key
        if not pk:
            raise ConfigError(f"incremental stream {s.name!r} needs a primary key to order "
                              "rows that share a cursor value; pass primary_key")
        wm = Watermark.from_state(s.cursor_field, pk, (state or {}).get("wm"))
        order_cols = [s.cursor_field, *[k for k in pk if k != s.cursor_field]]
        order = ", ".join(quote_ident(c) for c in order_cols)
        cur = quote_ident(s.cursor_field)
        base, n = self._select(s), self.batch_size
        from_null = f"{base} WHERE {cur} IS NOT NULL ORDER BY {order} LIMIT {n}"
        from_wm = f"{base} WHERE {cur} >= $1 ORDER BY {order} LIMIT {n}"
        after_sql = f"{base} WHERE {_row_gt(order_cols, 1)} ORDER BY {order} LIMIT {n}"
        after: list[Any] | None = None
        while True:
            if after is not None:
                recs = await conn.fetch(after_sql, *after)
            elif wm.value is None:
                recs = await conn.fetch(from_null)
            else:
                recs = await conn.fetch(from_wm, wm.value)
            if recs:
                after = [recs[-1][c] for c in order_cols]
                rows = wm.admit([dict(r) for r in recs])
                await queue.put((s, rows, {"phase": "incremental", "wm": wm.to_state()}))
            if len(recs) < n:
                if self.poll_interval is None:
                    return
                after = None  # next round re-applies the >= rule (late ties)
                await asyncio.sleep(self.poll_interval)
