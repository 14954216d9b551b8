"""``MysqlSink``: append / atomic overwrite / upsert, deletes, schema policies, and the
pipeline's checkpoint in each batch's InnoDB transaction."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import deque
from collections.abc import Iterator, Sequence
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from typing import Any

import pymysql
from pymysql.converters import escape_string

from etlsync.connectors.mysql import _wire
from etlsync.connectors.mysql.checkpoint import (
    DEFAULT_STATE_TABLE,
    MysqlCheckpointStore,
    state_ddl,
    write_checkpoint,
)
from etlsync.connectors.mysql.config import (
    MysqlOptions,
    connect,
    load_schema,
    native_type,
    qualified,
    quote,
)
from etlsync.core.batch import Batch, Op, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError, ConflictError, SchemaError
from etlsync.core.modes import ConflictStrategy, SchemaPolicy, WriteMode
from etlsync.core.options import renamed_keywords
from etlsync.core.schema import Column, ColumnType, Schema, infer_type
from etlsync.core.stages import Sink, StageContext
from etlsync.core.tracker import TicketHold


def _plain(v: Any) -> Any:
    """A value pymysql can escape: JSON for containers, naive UTC for aware datetimes."""
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)
    if isinstance(v, (set, frozenset)):
        return ",".join(sorted(str(x) for x in v))
    return v


def _literal(v: Any, escape: Any) -> str:
    t = type(v)
    if t is int or t is float:
        return repr(v)
    if t is str:
        return "'" + str(escape_string(v)) + "'"
    if v is None:
        return "NULL"
    result: str = escape(_plain(v))
    return result


_TSV_SPECIAL = re.compile(r"[\\\t\n\0]").search
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\0": "\\0"})


def _tsv(v: Any) -> str:
    """One LOAD DATA field as text (``\\N`` for NULL, backslash escapes); bytes travel as
    surrogate-escaped text and are restored when the chunk is encoded."""
    t = type(v)
    s: str
    if t is str:
        s = v
    elif v is None:
        return "\\N"
    elif t is int or t is float or t is Decimal:
        return str(v)
    elif t is bool:
        return "1" if v else "0"
    elif isinstance(v, (bytes, bytearray, memoryview)):
        s = bytes(v).decode("utf-8", "surrogateescape")
    else:
        v = _plain(v)
        if isinstance(v, dt.datetime):
            s = v.isoformat(" ")
        elif isinstance(v, dt.timedelta):
            sign = "-" if v < dt.timedelta(0) else ""
            total_us = abs(v) // dt.timedelta(microseconds=1)
            secs, us = divmod(total_us, 1_000_000)
            s = f"{sign}{secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}.{us:06d}"
        else:
            s = str(v)
    if _TSV_SPECIAL(s) is not None:
        s = s.translate(_TSV_ESCAPES)
    return s


class MysqlSink(Sink):
    """Writes batches into ``database.table`` on MySQL/MariaDB (InnoDB).

    :param write_mode: ``append`` (LOAD DATA LOCAL from memory, or multi-row INSERT),
        ``overwrite`` (rows go to a staging table, renamed over the target in one atomic
        ``RENAME TABLE`` at the end of the pass, right after the transaction storing the
        pass's last checkpoint) or ``upsert`` (INSERT ... ON DUPLICATE KEY UPDATE on the
        primary key).
    :param conflict: for upserts: skip / overwrite / merge / fail (see ``core.modes``).
    :param schema_policy: evolve / freeze / discard for columns the table lacks.
    :param exactly_once: ``TRANSACTIONAL``: store the pipeline's checkpoint in
        ``state_table`` in the same transaction as each batch (:meth:`checkpoint_store`).
    :param load_method: ``auto`` (LOAD DATA when the server allows it), ``load_data`` or
        ``insert`` for appends.
    Change batches (ops) apply deletes by key and updates as upserts in every mode.
    """

    @renamed_keywords({"options": "connection"})
    def __init__(self, connection: MysqlOptions | str | dict[str, Any] | None = None, *, table: str,
                 database: str | None = None, write_mode: WriteMode | str = WriteMode.APPEND,
                 primary_key: Sequence[str] = (),
                 conflict: ConflictStrategy | str = ConflictStrategy.OVERWRITE,
                 schema_policy: SchemaPolicy | str = SchemaPolicy.EVOLVE, create: bool = True,
                 exactly_once: bool = True, state_table: str = DEFAULT_STATE_TABLE,
                 load_method: str = "auto", name: str = "mysql", **conn: Any) -> None:
        self.options = MysqlOptions.from_params(connection, **conn)
        self.database = database or self.options.database or ""
        if not self.database:
            raise ConfigError("MysqlSink needs a database")
        try:
            self.write_mode = WriteMode(write_mode)
            self.conflict = ConflictStrategy(conflict)
            self.schema_policy = SchemaPolicy(schema_policy)
        except ValueError as exc:
            raise ConfigError(f"MysqlSink: {exc}") from exc
        if load_method not in ("auto", "load_data", "insert"):
            raise ConfigError(f"MysqlSink: load_method {load_method!r} (auto, load_data, insert)")
        self.table = table
        self.primary_key = tuple(primary_key)
        self.create = create
        self.exactly_once = exactly_once
        self.state_table = state_table
        self.load_method = load_method
        self.name = name
        self.capabilities = frozenset(
            {Capability.CHANGES, Capability.KEYED}
            | ({Capability.TRANSACTIONAL} if exactly_once else set()))
        self.conn: Any = None
        self.pipeline = ""
        self.context: StageContext | None = None
        self._columns: list[str] | None = None
        self._target = table
        self._use_load = False
        self._held = TicketHold()
        self._swapped = False

    def checkpoint_store(self) -> MysqlCheckpointStore | None:
        """A store reading the checkpoints this sink writes (``exactly_once``)."""
        if not self.exactly_once:
            return None
        return MysqlCheckpointStore(self.options, table=self.state_table, database=self.database)

    async def open(self, context: StageContext) -> None:
        self.context = context
        self.pipeline = context.pipeline
        self.conn = await connect(self.options, database=False, local_infile=True)
        async with self.conn.cursor() as cur:
            if self.exactly_once:
                await cur.execute(state_ddl(self.database, self.state_table))
            await cur.execute("SELECT @@global.local_infile")
            allowed = bool((await cur.fetchone())[0])
        self._use_load = self.load_method == "load_data" or (self.load_method == "auto" and allowed)
        if self.write_mode == WriteMode.OVERWRITE:
            self._target = f"{self.table}__etlsync_new"
            await self._prepare_staging(context.resuming_pass)

    async def _prepare_staging(self, resume: bool) -> None:
        """A fresh staging table, or the one a crashed run left open mid-pass."""
        self._columns = None
        async with self.conn.cursor() as cur:
            if not resume:
                await cur.execute(f"DROP TABLE IF EXISTS {qualified(self.database, self._target)}")
            if await load_schema(self.conn, self.database, self.table) is not None:
                await cur.execute(f"CREATE TABLE IF NOT EXISTS {qualified(self.database, self._target)}"
                                  f" LIKE {qualified(self.database, self.table)}")

    async def describe(self) -> Schema | None:
        conn = self.conn or await connect(self.options, database=False)
        try:
            return await load_schema(conn, self.database, self.table)
        finally:
            if conn is not self.conn:
                conn.close()

    # -- schema ----------------------------------------------------------------------------
    async def _ensure_table(self, batch: Batch, names: list[str]) -> list[str]:
        if self._columns is None:
            existing = await load_schema(self.conn, self.database, self._target)
            if existing is None:
                if not self.create:
                    raise SchemaError(f"table {self.database}.{self._target} does not exist "
                                      "and create=False")
                await self._create(batch, names)
                existing = await load_schema(self.conn, self.database, self._target)
                assert existing is not None
            self._columns = existing.names
            if not self.primary_key:
                self.primary_key = existing.primary_key
        missing = [n for n in names if n not in self._columns]
        if missing:
            if self.schema_policy == SchemaPolicy.FREEZE:
                raise SchemaError(f"table {self.database}.{self.table} has no column(s) "
                                  f"{', '.join(missing)} (schema_policy=freeze)")
            if self.schema_policy == SchemaPolicy.EVOLVE:
                adds = ", ".join(f"ADD COLUMN {quote(c.name)} {native_type(c)} NULL"
                                 for c in self._infer_columns(batch, missing))
                async with self.conn.cursor() as cur:
                    await cur.execute(f"ALTER TABLE {qualified(self.database, self._target)} {adds}")
                self._columns.extend(missing)
        return [c for c in self._columns if c in names] if names else []

    def _infer_columns(self, batch: Batch, names: list[str]) -> list[Column]:
        out = []
        for n in names:
            if batch.schema is not None and n in batch.schema:
                out.append(batch.schema.column(n))
                continue
            if batch.records is not None and batch.columns is not None and n in batch.columns:
                i = batch.columns.index(n)
                value = next((r[i] for r in batch.records if r[i] is not None), None)
            else:
                value = next((r[n] for r in batch.rows if r.get(n) is not None), None)
            out.append(Column(n, infer_type(value) if value is not None else ColumnType.STRING))
        return out

    async def _create(self, batch: Batch, names: list[str]) -> None:
        pk = self.primary_key or (batch.schema.primary_key if batch.schema else ())
        self.primary_key = tuple(pk)
        cols = self._infer_columns(batch, names)
        defs = [f"{quote(c.name)} {native_type(c, c.name in pk)}"
                f"{' NOT NULL' if c.name in pk else ' NULL'}" for c in cols]
        if pk:
            defs.append("PRIMARY KEY (" + ", ".join(quote(k) for k in pk) + ")")
        async with self.conn.cursor() as cur:
            await cur.execute(f"CREATE TABLE IF NOT EXISTS {qualified(self.database, self._target)} "
                              f"({', '.join(defs)}) ENGINE=InnoDB")

    # -- writes ----------------------------------------------------------------------------
    async def write(self, batch: Batch) -> None:
        ctx = self.context
        assert ctx is not None
        checkpoint = ctx.checkpoint_for(batch)
        overwrite = self.write_mode == WriteMode.OVERWRITE
        if overwrite and self._swapped and len(batch):
            await self._prepare_staging(False)  # the next pass of this run: a fresh staging
            self._swapped = False
        if len(batch) or checkpoint is not None:
            await self._transaction(batch, checkpoint)
        if overwrite and batch.end_of_pass:
            await self._swap()
            self._swapped = True  # no staging table is left behind once a pass is installed
            self._held.release()
        elif overwrite and not ctx.owns_checkpoint:
            self._held.add(batch)  # nothing may be committed before the swap

    async def _transaction(self, batch: Batch, checkpoint: Any) -> None:
        names = _column_names(batch) if len(batch) else []
        cols = await self._ensure_table(batch, names) if len(batch) else []
        await self.conn.begin()
        try:
            if len(batch):
                await self._apply(batch, cols)
            if checkpoint is not None:
                async with self.conn.cursor() as cur:
                    await write_checkpoint(cur, self.database, self.state_table, self.pipeline,
                                           checkpoint)
            await self.conn.commit()
        except BaseException:
            self.conn.close()  # an interrupted transaction: the server rolls it back
            self.conn = None
            raise

    async def _apply(self, batch: Batch, cols: list[str]) -> None:
        upsert = self.write_mode == WriteMode.UPSERT or batch.ops is not None
        if upsert and not self.primary_key:
            raise ConfigError(f"MysqlSink {self.table}: upserts and deletes need a primary key")
        if batch.ops is None:
            if (not upsert and self._use_load and batch.records is not None
                    and batch.columns is not None):
                await self._load(_project(batch.columns, batch.records, cols), cols)
                return
            await self._rows(batch.rows, cols, upsert)
            return
        for op, rows in _runs(batch, self.primary_key):
            if op == Op.DELETE:
                await self._delete(rows)
            elif op == Op.TRUNCATE:
                async with self.conn.cursor() as cur:
                    await cur.execute(f"DELETE FROM {qualified(self.database, self._target)}")
            else:
                await self._rows(rows, cols, True)

    async def _rows(self, rows: list[Row], cols: list[str], upsert: bool) -> None:
        if not upsert and self._use_load:
            await self._load(_tuples(rows, cols), cols)
            return
        conflict = self.conflict if upsert else None
        if conflict == ConflictStrategy.OVERWRITE and self._columns:
            cols = list(self._columns)  # absent columns become NULL
        if conflict == ConflictStrategy.MERGE:
            groups: dict[tuple[str, ...], list[Row]] = {}
            for r in rows:
                groups.setdefault(tuple(c for c in cols if c in r), []).append(r)
            for present, group in groups.items():
                await self._insert(group, list(present), conflict)
            return
        await self._insert(rows, cols, conflict)

    async def _insert(self, rows: list[Row], cols: list[str], conflict: ConflictStrategy | None,
                      ) -> None:
        escape = self.conn.escape
        head = (f"INSERT INTO {qualified(self.database, self._target)} ("
                + ", ".join(quote(c) for c in cols) + ") VALUES ")
        tail = ""
        pk = self.primary_key
        if conflict == ConflictStrategy.SKIP:
            tail = f" ON DUPLICATE KEY UPDATE {quote(pk[0])} = {quote(pk[0])}"
        elif conflict in (ConflictStrategy.OVERWRITE, ConflictStrategy.MERGE):
            upd = [f"{quote(c)} = VALUES({quote(c)})" for c in cols if c not in pk]
            tail = " ON DUPLICATE KEY UPDATE " + ", ".join(
                upd or [f"{quote(pk[0])} = {quote(pk[0])}"])
        async with self.conn.cursor() as cur:
            for chunk in _chunks(rows, 2000):
                values = ",".join(
                    "(" + ",".join([_literal(r.get(c), escape) for c in cols]) + ")" for r in chunk)
                try:
                    await cur.execute(head + values + tail)
                except pymysql.err.IntegrityError as exc:
                    if exc.args[0] == 1062 and conflict == ConflictStrategy.FAIL:
                        m = re.search(r"Duplicate entry '(.*)' for key", str(exc.args[1]))
                        key = m.group(1) if m else "?"
                        raise ConflictError(f"{self.database}.{self.table}: key {key} exists "
                                            "(conflict=fail)") from exc
                    raise

    async def _delete(self, rows: list[Row]) -> None:
        pk = self.primary_key
        target = qualified(self.database, self._target)
        async with self.conn.cursor() as cur:
            for chunk in _chunks(rows, 1000):
                if len(pk) == 1:
                    keys = ",".join(_literal(r.get(pk[0]), self.conn.escape) for r in chunk)
                    await cur.execute(f"DELETE FROM {target} WHERE {quote(pk[0])} IN ({keys})")
                else:
                    tuples = ",".join("(" + ",".join(_literal(r.get(k), self.conn.escape)
                                                     for k in pk) + ")" for r in chunk)
                    cols = ", ".join(quote(k) for k in pk)
                    await cur.execute(f"DELETE FROM {target} WHERE ({cols}) IN ({tuples})")

    async def _load(self, tuples: Sequence[Sequence[Any]], cols: list[str]) -> None:
        sql = (f"LOAD DATA LOCAL INFILE 'etlsync-stream' INTO TABLE "
               f"{qualified(self.database, self._target)} CHARACTER SET utf8mb4 "
               "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ("
               + ", ".join(quote(c) for c in cols) + ")")
        await _wire.load_data_stream(self.conn, sql, _tsv_lines(tuples, len(cols)))

    async def close(self) -> None:
        self._held.clear()
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    async def _swap(self) -> None:
        """Replace the target with the staging table in one atomic RENAME."""
        live, new = qualified(self.database, self.table), qualified(self.database, self._target)
        old = qualified(self.database, f"{self.table}__etlsync_old")
        async with self.conn.cursor() as cur:
            await cur.execute(f"DROP TABLE IF EXISTS {old}")
            if await load_schema(self.conn, self.database, self.table) is not None:
                await cur.execute(f"RENAME TABLE {live} TO {old}, {new} TO {live}")
                await cur.execute(f"DROP TABLE {old}")
            else:
                await cur.execute(f"RENAME TABLE {new} TO {live}")


def _runs(batch: Batch, pk: Sequence[str]) -> Iterator[tuple[Op, list[Row]]]:
    """Consecutive rows of the same kind (inserts and updates together); an update that
    changed the key deletes the old key first."""
    assert batch.ops is not None
    cur_op: Op | None = None
    cur: list[Row] = []
    before = batch.before
    for i, (op, row) in enumerate(zip(batch.ops, batch.rows, strict=True)):
        steps: list[tuple[Op, Row]] = []
        if op == Op.UPDATE and before is not None:
            old = before[i]
            if old is not None and any(old.get(k) != row.get(k) for k in pk):
                steps.append((Op.DELETE, old))
        steps.append((Op.INSERT if op == Op.UPDATE else op, row))
        for kind, r in steps:
            if kind != cur_op and cur:
                assert cur_op is not None
                yield cur_op, cur
                cur = []
            cur_op = kind
            cur.append(r)
    if cur and cur_op is not None:
        yield cur_op, cur


def _chunks(rows: list[Row], n: int) -> Iterator[list[Row]]:
    for i in range(0, len(rows), n):
        yield rows[i:i + n]


def _column_names(batch: Batch) -> list[str]:
    """The union of the rows' keys (schema order first); fast when all rows share keys."""
    seen: dict[str, None] = dict.fromkeys(batch.schema.names) if batch.schema else {}
    if batch.columns is not None and batch.records is not None:
        seen.update(dict.fromkeys(batch.columns))
        return list(seen)
    rows = batch.rows
    first = list(rows[0])
    if first and set(map(len, rows)) == {len(first)}:
        try:
            deque(map(itemgetter(*first), rows), maxlen=0)
            seen.update(dict.fromkeys(first))
            return list(seen)
        except KeyError:
            pass
    for r in rows:
        seen.update(dict.fromkeys(r))
    return list(seen)


_PLAIN_TYPES = {str, int, float, Decimal}


def _tuples(rows: list[Row], cols: list[str]) -> list[Sequence[Any]]:
    """The rows' values in ``cols`` order (an absent value is ``None``)."""
    getter = itemgetter(*cols)
    try:
        return list(map(getter, rows)) if len(cols) > 1 else [(r[cols[0]],) for r in rows]
    except KeyError:
        return [tuple(r.get(c) for c in cols) for r in rows]


def _project(columns: Sequence[str], records: list[Sequence[Any]], cols: list[str]
             ) -> Sequence[Sequence[Any]]:
    """Records of ``columns`` as value sequences in ``cols`` order (an absent column is
    ``None``); the records themselves when the orders agree."""
    if tuple(cols) == tuple(columns):
        return records
    index = {c: i for i, c in enumerate(columns)}
    if len(cols) > 1 and all(c in index for c in cols):
        return list(map(itemgetter(*[index[c] for c in cols]), records))
    return [tuple(r[index[c]] if c in index else None for c in cols) for r in records]


def _tsv_lines(tuples: Sequence[Sequence[Any]], width: int) -> Iterator[bytes]:
    """LOAD DATA input in chunks of 2,000 rows of ``width`` values. Batches of plain values
    (str, int, float, Decimal) that need no escaping are joined in C; others go value by
    value."""
    plain = set(map(type, chain.from_iterable(tuples))) <= _PLAIN_TYPES
    tabs = width - 1
    for i in range(0, len(tuples), 2_000):
        chunk = tuples[i:i + 2_000]
        if plain:
            text = "\n".join(["\t".join(map(str, t)) for t in chunk]) + "\n"
            if ("\\" not in text and "\0" not in text and text.count("\t") == tabs * len(chunk)
                    and text.count("\n") == len(chunk)):
                yield text.encode("utf-8", "surrogateescape")
                continue
        conv = _tsv
        text = "\n".join(["\t".join([conv(x) for x in t]) for t in chunk]) + "\n"
        yield text.encode("utf-8", "surrogateescape")
