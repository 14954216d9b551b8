"""Dead letters: rows a stage could not process, kept with why, where and when.

A :class:`DeadLetterSink` stores :class:`DeadLetter` records durably and reads them back
for :mod:`etlsync.resilience.replay`. Implementations: JSON Lines file, SQLite table,
PostgreSQL table (asyncpg), and memory (tests).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etlsync.core.codec import dumps, loads
from etlsync.core.options import renamed_keywords
from etlsync.core.serial import SerialThread


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class DeadLetter:
    """One rejected row.

    :param row: the original row, as the stage received it.
    :param stage: the stage that rejected it (``sink:postgres``, ``op:Map``).
    :param error_type: the exception's class name; ``error`` its message.
    :param kind: the classification (``bad_data`` usually); ``reason`` its detail.
    :param position: the source position of the row's batch.
    :param id: assigned by the store when read back (for replay).
    """

    row: dict[str, Any]
    stage: str
    error_type: str
    error: str
    pipeline: str = ""
    stream: str = ""
    kind: str = "bad_data"
    reason: str = ""
    op: str = "insert"
    before: dict[str, Any] | None = None
    position: Any = None
    at: dt.datetime = field(default_factory=_utcnow)
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A dict of the record; values stay Python objects."""
        return {"id": self.id, "pipeline": self.pipeline, "stream": self.stream,
                "stage": self.stage, "op": self.op, "error_type": self.error_type,
                "error": self.error, "kind": self.kind, "reason": self.reason,
                "at": self.at, "position": self.position, "row": self.row,
                "before": self.before}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeadLetter:
        at = d.get("at")
        if isinstance(at, str):
            at = dt.datetime.fromisoformat(at)
        return cls(row=d["row"], stage=d.get("stage", ""), error_type=d.get("error_type", ""),
                   error=d.get("error", ""), pipeline=d.get("pipeline", ""),
                   stream=d.get("stream", ""), kind=d.get("kind", "bad_data"),
                   reason=d.get("reason", ""), op=d.get("op", "insert"),
                   before=d.get("before"), position=d.get("position"),
                   at=at if isinstance(at, dt.datetime) else _utcnow(), id=d.get("id"))


class DeadLetterSink(ABC):
    """Where dead letters go. ``write`` returns only once the letters are durable."""

    name: str = "dead_letters"

    async def open(self) -> None:
        """Connect and create the storage; safe to call again after :meth:`close`."""

    @abstractmethod
    async def write(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` durably."""

    @abstractmethod
    def read(self, *, pipeline: str | None = None,
             include_replayed: bool = False) -> AsyncIterator[DeadLetter]:
        """Yield stored letters in the order written, with ``id`` set."""

    @abstractmethod
    async def mark_replayed(self, ids: Iterable[int]) -> None:
        """Mark letters as replayed so a later replay skips them."""

    async def close(self) -> None:
        """Release resources."""

    async def count(self, *, pipeline: str | None = None,
                    include_replayed: bool = False) -> int:
        """How many letters :meth:`read` would yield."""
        n = 0
        async for _ in self.read(pipeline=pipeline, include_replayed=include_replayed):
            n += 1
        return n


class MemoryDeadLetterSink(DeadLetterSink):
    """Keeps letters in a list (tests, in-process replay)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.replayed: set[int] = set()

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            letter.id = len(self.letters) + 1
            self.letters.append(letter)

    async def read(self, *, pipeline: str | None = None,
                   include_replayed: bool = False) -> AsyncIterator[DeadLetter]:
        for letter in list(self.letters):
            if pipeline is not None and letter.pipeline != pipeline:
                continue
            if not include_replayed and letter.id in self.replayed:
                continue
            yield letter

    async def mark_replayed(self, ids: Iterable[int]) -> None:
        self.replayed.update(ids)


class JsonlDeadLetterSink(DeadLetterSink):
    """One JSON object per line in ``path`` (values encoded losslessly, see core/codec.py);
    each write is flushed and fsynced. Replayed ids (line numbers) go to ``path.replayed``.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.replayed_path = self.path.with_name(self.path.name + ".replayed")
        self.fsync = fsync
        self.name = f"jsonl:{self.path.name}"

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, data: bytes, path: Path) -> None:
        with open(path, "ab") as fh:
            fh.write(data)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        data = b"".join(dumps({k: v for k, v in x.to_dict().items() if k != "id"}) + b"\n"
                        for x in letters)
        await asyncio.to_thread(self._append, data, self.path)

    def _replayed(self) -> set[int]:
        if not self.replayed_path.exists():
            return set()
        return {int(x) for x in self.replayed_path.read_text().split()}

    async def read(self, *, pipeline: str | None = None,
                   include_replayed: bool = False) -> AsyncIterator[DeadLetter]:
        if not self.path.exists():
            return
        skip = set() if include_replayed else await asyncio.to_thread(self._replayed)
        data = await asyncio.to_thread(self.path.read_bytes)
        for i, line in enumerate(data.splitlines(), 1):
            if not line.strip() or i in skip:
                continue
            d = loads(line)
            if pipeline is not None and d.get("pipeline") != pipeline:
                continue
            d["id"] = i
            yield DeadLetter.from_dict(d)

    async def mark_replayed(self, ids: Iterable[int]) -> None:
        data = "".join(f"{i}\n" for i in ids).encode()
        if data:
            await asyncio.to_thread(self._append, data, self.replayed_path)


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


_COLUMNS = ("pipeline", "stream", "stage", "op", "error_type", "error", "kind", "reason",
            "at", "position", "row", "before")


def _json(value: Any) -> str:
    return dumps(value).decode()


class SqliteDeadLetterSink(DeadLetterSink):
    """A table in a SQLite database (created if absent; one transaction per write)."""

    def __init__(self, path: str | os.PathLike[str], table: str = "etlsync_dead_letters") -> None:
        self.path = str(path)
        self.table = table
        self.name = f"sqlite:{table}"
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._serial = SerialThread("etlsync-dead-letters")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("pragma busy_timeout = 10000")
        conn.execute(
            f"create table if not exists {_quote(self.table)} ("
            "id integer primary key autoincrement, pipeline text, stream text, stage text,"
            " op text, error_type text, error text, kind text, reason text, at text,"
            " position text, row text, before text, replayed_at text)")
        return conn

    async def open(self) -> None:
        if self._conn is None:
            self._conn = await self._serial.run(self._connect)

    async def _run(self, fn: Any, *args: Any) -> Any:
        await self.open()
        async with self._lock:
            return await self._serial.run(fn, *args)

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        assert self._conn is not None
        cols = ", ".join(_quote(c) for c in _COLUMNS)
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._conn:
            self._conn.execute("begin immediate")
            self._conn.executemany(
                f"insert into {_quote(self.table)} ({cols}) values ({marks})", rows)

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        rows = [(x.pipeline, x.stream, x.stage, x.op, x.error_type, x.error, x.kind, x.reason,
                 x.at.isoformat(), _json(x.position), _json(x.row),
                 None if x.before is None else _json(x.before)) for x in letters]
        await self._run(self._insert, rows)

    def _select(self, pipeline: str | None, include_replayed: bool) -> list[tuple[Any, ...]]:
        assert self._conn is not None
        where, args = [], []
        if pipeline is not None:
            where.append('"pipeline" = ?')
            args.append(pipeline)
        if not include_replayed:
            where.append('"replayed_at" is null')
        sql = (f'select "id", {", ".join(_quote(c) for c in _COLUMNS)} from {_quote(self.table)}'
               + (" where " + " and ".join(where) if where else "") + ' order by "id"')
        return list(self._conn.execute(sql, args).fetchall())

    async def read(self, *, pipeline: str | None = None,
                   include_replayed: bool = False) -> AsyncIterator[DeadLetter]:
        for r in await self._run(self._select, pipeline, include_replayed):
            yield _letter_from_row(r)

    def _mark(self, ids: list[int]) -> None:
        assert self._conn is not None
        now = _utcnow().isoformat()
        with self._conn:
            self._conn.execute("begin immediate")
            self._conn.executemany(
                f'update {_quote(self.table)} set "replayed_at" = ? where "id" = ?',
                [(now, i) for i in ids])

    async def mark_replayed(self, ids: Iterable[int]) -> None:
        await self._run(self._mark, list(ids))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._serial.run(conn.close)
            self._serial.shutdown()


def _letter_from_row(r: Sequence[Any]) -> DeadLetter:
    (id_, pipeline, stream, stage, op, error_type, error, kind, reason, at, position, row,
     before) = r
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    return DeadLetter(row=loads(row), stage=stage, error_type=error_type, error=error,
                      pipeline=pipeline, stream=stream, kind=kind, reason=reason, op=op,
                      before=None if before is None else loads(before),
                      position=loads(position), at=at, id=int(id_))


class PostgresDeadLetterSink(DeadLetterSink):
    """A table in PostgreSQL via asyncpg (created if absent; one transaction per write).

    :param connection: a ``postgresql://`` URI, a ``PgConnectionConfig`` or a mapping of its
        fields (TLS options, ``password_env``; never logged).
    :param table: table name, optionally ``schema.table``.
    """

    @renamed_keywords({"dsn": "connection"})
    def __init__(self, connection: Any = None, table: str = "etlsync_dead_letters") -> None:
        from etlsync.connectors.postgres.connection import PgConnectionConfig

        self.config = PgConnectionConfig.coerce(connection)
        schema, _, name = table.rpartition(".")
        self.qualified = (f"{_quote(schema)}." if schema else "") + _quote(name)
        self.name = f"postgres:{table}"
        self._conn: Any = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresDeadLetterSink(table={self.qualified})"

    async def open(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        self._conn = await self.config.connect()
        await self._conn.execute(
            f"create table if not exists {self.qualified} ("
            '"id" bigserial primary key, "pipeline" text, "stream" text, "stage" text,'
            ' "op" text, "error_type" text, "error" text, "kind" text, "reason" text,'
            ' "at" timestamptz, "position" json, "row" json, "before" json,'
            ' "replayed_at" timestamptz)')

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        async with self._lock:
            await self.open()
            cols = ", ".join(_quote(c) for c in _COLUMNS)
            marks = ", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))
            rows = [(x.pipeline, x.stream, x.stage, x.op, x.error_type, x.error, x.kind,
                     x.reason, x.at, _json(x.position), _json(x.row),
                     None if x.before is None else _json(x.before)) for x in letters]
            async with self._conn.transaction():
                await self._conn.executemany(
                    f"insert into {self.qualified} ({cols}) values ({marks})", rows)

    async def read(self, *, pipeline: str | None = None,
                   include_replayed: bool = False) -> AsyncIterator[DeadLetter]:
        async with self._lock:
            await self.open()
            where, args = [], []
            if pipeline is not None:
                args.append(pipeline)
                where.append(f'"pipeline" = ${len(args)}')
            if not include_replayed:
                where.append('"replayed_at" is null')
            sql = (f'select "id", {", ".join(_quote(c) for c in _COLUMNS)} from '
                   f"{self.qualified}" + (" where " + " and ".join(where) if where else "")
                   + ' order by "id"')
            records = await self._conn.fetch(sql, *args)
        for r in records:
            yield _letter_from_row(tuple(r))

    async def mark_replayed(self, ids: Iterable[int]) -> None:
        id_list = list(ids)
        if not id_list:
            return
        async with self._lock:
            await self.open()
            await self._conn.execute(
                f'update {self.qualified} set "replayed_at" = now() where "id" = any($1::bigint[])',
                id_list)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:  # noqa: BLE001 - a broken connection cannot close cleanly
                conn.terminate()


__all__ = ["DeadLetter", "DeadLetterSink", "JsonlDeadLetterSink", "MemoryDeadLetterSink",
           "PostgresDeadLetterSink", "SqliteDeadLetterSink"]
