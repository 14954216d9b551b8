"""SqliteSink: append, atomic overwrite and upsert into a SQLite table, exactly-once."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import msgspec

from etlsync.connectors.sqlite import journal
from etlsync.connectors.sqlite._values import DECLARED, NATIVE, adapt, type_of_value
from etlsync.connectors.sqlite.checkpoint import (
    STATE_TABLE,
    SqliteCheckpointStore,
    connect,
    ensure_state_table,
    quote,
    write_state,
)
from etlsync.connectors.sqlite.source import table_schema
from etlsync.core.batch import Batch, Op, Row
from etlsync.core.capabilities import Capability
from etlsync.core.checkpoint import Checkpoint
from etlsync.core.errors import ConfigError, ConflictError, DataError, SchemaError
from etlsync.core.modes import ConflictStrategy, SchemaPolicy, WriteMode
from etlsync.core.schema import ColumnType, Schema
from etlsync.core.serial import SerialThread
from etlsync.core.stages import Sink, StageContext
from etlsync.core.tracker import TicketHold


def _adapt_rows(tuples: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    if set(map(type, chain.from_iterable(tuples))) <= NATIVE:
        return tuples
    return [tuple(v if type(v) in NATIVE else adapt(v) for v in t) for t in tuples]


def _mapped(tuples: Iterable[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    """Tuples with every value SQLite cannot store as is mapped (see ``_values``)."""
    for t in tuples:
        yield tuple(v if type(v) in NATIVE else adapt(v) for v in t)


_BIND_ERRORS = (sqlite3.ProgrammingError, sqlite3.InterfaceError, DeprecationWarning)


_TEXT_TYPES: frozenset[type] = frozenset({str, type(None), bool})
"""Batches holding only these go to SQLite as one JSON array (see :meth:`SqliteSink._insert`)."""
_JSON = msgspec.json.Encoder()
_ROWS_PER_STATEMENT = 200
"""Rows in one multi-row ``INSERT`` (bounded by SQLite's limit on bound variables)."""
_ARROW = sqlite3.sqlite_version_info >= (3, 38, 0)


def _runs(rows: list[Row]) -> list[list[Row]]:
    """Consecutive rows with the same columns, in order."""
    out: list[list[Row]] = []
    keys: list[str] | None = None
    for r in rows:
        k = list(r)
        if out and k == keys:
            out[-1].append(r)
        else:
            out.append([r])
            keys = k
    return out


def _getter(keys: Sequence[Any]) -> Any:
    """A function from a row (or record) to the tuple of its values at ``keys`` (column
    names, or positions in a record); KeyError if one is absent."""
    if len(keys) == 1:
        k = keys[0]
        return lambda r: (r[k],)
    return itemgetter(*keys)


class SqliteSink(journal.SqliteJournaled, Sink):
    """Writes batches into a SQLite table, one transaction per batch, in a worker thread.

    ``TRANSACTIONAL``: each transaction also records the pipeline's checkpoint in the state
    table (``_etlsync_state``) of the same file, and :meth:`checkpoint_store` reads it, so a
    pipeline into SQLite resumes exactly where the data ends (exactly-once).

    :param path: the database file (created if absent; WAL mode).
    :param table: the target table (created from the batch schema or the first rows when
        ``create``).
    :param write_mode: ``append``; ``overwrite`` (rows go to a staging table that replaces the
        target in one transaction at the end of the source's pass); ``upsert`` on
        ``primary_key`` with ``conflict``.
    :param primary_key: the key columns (default: the table's, or the batch schema's).
    :param conflict: ``skip``, ``overwrite``, ``merge`` or ``fail`` (see
        :mod:`etlsync.core.modes`).
    :param schema_policy: for source columns the table lacks: ``evolve`` (ALTER TABLE ADD
        COLUMN), ``freeze`` (SchemaError naming the column) or ``discard``.
    :param synchronous: ``full`` (durable against power loss) or ``normal`` (against process
        crashes; faster).
    :param json_batches: insert batches of text values as one JSON array per statement: the
        statement runs without the GIL, so the source parses the next batch meanwhile on
        another core; it costs more CPU in all, so it only pays on an idle multi-core machine.

    Change batches are applied in order: inserts as configured, updates as upserts of the
    columns present (a missing column keeps its stored value), deletes by primary key,
    truncates as ``DELETE FROM``.
    """

    name = "sqlite"
    capabilities = frozenset({Capability.TRANSACTIONAL, Capability.CHANGES, Capability.KEYED,
                              Capability.REVERSIBLE})

    def __init__(self, path: str | os.PathLike[str], *, table: str,
                 write_mode: WriteMode | str = WriteMode.APPEND, primary_key: Sequence[str] = (),
                 conflict: ConflictStrategy | str = ConflictStrategy.OVERWRITE,
                 schema_policy: SchemaPolicy | str = SchemaPolicy.EVOLVE, create: bool = True,
                 synchronous: str = "full", timeout: float = 30.0,
                 state_table: str = STATE_TABLE, json_batches: bool = False) -> None:
        self._serial = SerialThread("etlsync-sqlite-sink")
        if not table:
            raise ConfigError("SqliteSink needs a table name")
        self.path = os.fspath(path)
        self.table = table
        self.write_mode = WriteMode(write_mode)
        self.primary_key = tuple(primary_key)
        self.conflict = ConflictStrategy(conflict)
        self.schema_policy = SchemaPolicy(schema_policy)
        self.create = create
        self.synchronous = synchronous
        self.timeout = timeout
        self.state_table = state_table
        self.json_batches = json_batches
        self.staging = f"_etlsync_stage_{table}"
        self._conn: sqlite3.Connection | None = None
        self._context: StageContext | None = None
        self._target = table
        self._cols: dict[str, str] | None = None
        self._pk: tuple[str, ...] = self.primary_key
        self._sql: dict[Any, str] = {}
        self._held = TicketHold()
        self._staged = False
        self._keyed: set[str] = set()
        self._max_variables = 999

    # -- lifecycle -------------------------------------------------------------------------
    def checkpoint_store(self) -> SqliteCheckpointStore:
        """A store reading the checkpoints this sink writes (its file, its state table)."""
        return SqliteCheckpointStore(self.path, table=self.state_table, timeout=self.timeout,
                                     synchronous=self.synchronous)

    async def open(self, context: StageContext) -> None:
        self._context = context
        await self._serial.run(self._open_sync, context.resuming_pass)

    def _open_sync(self, resuming_pass: bool) -> None:
        conn = connect(self.path, timeout=self.timeout, synchronous=self.synchronous)
        self._conn = conn
        self._max_variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        ensure_state_table(conn, self.state_table)
        if self._journal_run is not None:
            journal.start(conn, self._journal_run, self.table)
        existing = self._columns(self.table)
        if existing is None and not self.create:
            raise ConfigError(f"SqliteSink: table {self.table!r} does not exist in {self.path} "
                              "and create=False")
        if not self._pk and existing is not None:
            self._pk = self._table_pk(self.table)
        if self.write_mode == WriteMode.OVERWRITE:
            if resuming_pass and self._columns(self.staging) is not None:
                # the pass a crashed run left open goes on: its rows are in the staging table
                self._target, self._cols, self._sql, self._staged = (
                    self.staging, self._columns(self.staging), {}, True)
            else:
                conn.execute(f"DROP TABLE IF EXISTS {quote(self.staging)}")
                self._begin_stage()
        else:
            self._cols = existing
            if existing is not None and self._pk and self._needs_key_index():
                self._ensure_key_index(self.table)

    def _begin_stage(self) -> None:
        self._target, self._cols, self._sql, self._staged = self.staging, None, {}, True
        existing = self._columns(self.table)
        if existing is not None:
            self._create(self.staging, list(existing.items()))

    async def describe(self) -> Schema | None:
        """The target table's schema, or ``None`` if it does not exist yet."""
        def run() -> Schema | None:
            if not os.path.exists(self.path):
                return None
            uri = Path(self.path).absolute().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout)
            try:
                return table_schema(conn, self.table)
            finally:
                conn.close()
        return await self._serial.run(run)

    async def write(self, batch: Batch) -> None:
        assert self._context is not None, "SqliteSink.write before open"
        ctx = self._context
        checkpoint = ctx.checkpoint_for(batch)
        if self.write_mode != WriteMode.OVERWRITE:
            await self._serial.run(self._transaction, batch, checkpoint, False)
            return
        if not self._staged:
            await self._serial.run(self._begin_stage)
        swap = batch.end_of_pass
        if ctx.owns_checkpoint:  # checkpoints go with the staged rows: a crash resumes the pass
            await self._serial.run(self._transaction, batch, checkpoint, swap)
        elif swap:
            await self._serial.run(self._transaction, batch, None, True)
            self._held.release()
        else:  # nothing may be committed before the new data set is installed
            await self._serial.run(self._transaction, batch, None, False)
            self._held.add(batch)

    async def close(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            if self._staged and not (self._context is not None
                                     and self._context.owns_checkpoint):
                await self._serial.run(conn.execute, f"DROP TABLE IF EXISTS {quote(self.staging)}")
        finally:
            self._held.clear()
            self._conn = None
            await self._serial.run(conn.close)
            self._serial.shutdown()

    # -- transactions ----------------------------------------------------------------------
    def _transaction(self, batch: Batch, checkpoint: Checkpoint | None, swap: bool) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            if len(batch):
                self._apply(batch)
            if swap:
                self._swap()
            if checkpoint is not None and self._context is not None:
                write_state(conn, self._context.pipeline, checkpoint, self.state_table)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._sql = {}
            self._cols = self._columns(self._target)
            if swap:
                self._target, self._staged = self.staging, True
            raise

    def _swap(self) -> None:
        conn = self._conn
        assert conn is not None
        q = quote(self.table)
        if self._columns(self.staging) is None:
            if self._columns(self.table) is not None:
                conn.execute(f"DELETE FROM {q}")
        else:
            indexes = [sql for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL", (self.table,))]
            journal.retire(conn, self._journal_run, self.table)  # dropped, or kept to revert
            conn.execute(f"ALTER TABLE {quote(self.staging)} RENAME TO {q}")
            for sql in indexes:
                conn.execute(sql)
        self._target, self._staged, self._sql = self.table, False, {}
        self._cols = self._columns(self.table)

    def _apply(self, batch: Batch) -> None:
        insert_kind = self._insert_kind()
        if batch.ops is None or all(op == Op.INSERT for op in batch.ops):
            records, columns = batch.records, batch.columns
            if records is not None and columns is not None:
                self._insert_records(list(columns), records, batch.schema, insert_kind)
            else:
                self._insert(batch.rows, batch.schema, insert_kind)
            return
        ops, rows, before = batch.ops, batch.rows, batch.before
        i, n = 0, len(rows)
        while i < n:
            op, j = ops[i], i + 1
            while j < n and ops[j] == op:
                j += 1
            chunk = rows[i:j]
            if op == Op.INSERT:
                self._insert(chunk, batch.schema, insert_kind)
            elif op == Op.UPDATE:
                self._update(chunk, before[i:j] if before else None, batch)
            elif op == Op.DELETE:
                olds = before[i:j] if before else [None] * len(chunk)
                self._delete([b if b else r for r, b in zip(chunk, olds, strict=True)], batch)
            elif op == Op.TRUNCATE and self._cols is not None:
                assert self._conn is not None
                self._conn.execute(f"DELETE FROM {quote(self._target)}")
            i = j

    def _insert_kind(self) -> str:
        if self.write_mode == WriteMode.UPSERT:
            return self.conflict.value
        if self.write_mode == WriteMode.OVERWRITE and self._pk:
            return self.conflict.value
        return "insert"

    def _update(self, rows: list[Row], before: list[Row | None] | None, batch: Batch) -> None:
        pk = self._require_pk(batch, "update")
        if self._cols is not None and self._target not in self._keyed:
            self._ensure_key_index(self._target)  # ON CONFLICT needs a unique key
            self._keyed.add(self._target)
        moved = before is not None and any(
            b and all(k in b for k in pk) and any(b[k] != r.get(k) for k in pk)
            for r, b in zip(rows, before, strict=True))
        if not moved:
            self._insert(rows, batch.schema, ConflictStrategy.MERGE.value)
            return
        assert before is not None
        for r, b in zip(rows, before, strict=True):
            if b and any(b.get(k) != r.get(k) for k in pk):
                self._delete([b], batch)
            self._insert([r], batch.schema, ConflictStrategy.MERGE.value)

    def _delete(self, rows: list[Row], batch: Batch) -> None:
        pk = self._require_pk(batch, "delete")
        if self._cols is None:
            return
        try:
            keys = [tuple(r[k] for k in pk) for r in rows]
        except KeyError as exc:
            raise DataError(f"SqliteSink({self.table!r}): a delete of stream {batch.stream!r} "
                            f"lacks key column {exc.args[0]!r}", column=exc.args[0]) from exc
        where = " AND ".join(f"{quote(k)} = ?" for k in pk)
        assert self._conn is not None
        self._conn.executemany(f"DELETE FROM {quote(self._target)} WHERE {where}",
                               _adapt_rows(keys))

    def _require_pk(self, batch: Batch, what: str) -> tuple[str, ...]:
        if not self._pk and batch.schema is not None and batch.schema.primary_key:
            self._pk = tuple(batch.schema.primary_key)
        if not self._pk:
            raise ConfigError(f"SqliteSink({self.table!r}): applying a {what} of stream "
                              f"{batch.stream!r} needs a primary key (set primary_key=)")
        return self._pk

    def _insert(self, rows: list[Row], schema: Schema | None, kind: str) -> None:
        cols = list(rows[0])
        if cols and set(map(len, rows)) == {len(cols)}:
            get = _getter(cols)
            try:
                records = list(map(get, rows))
            except KeyError:
                pass  # same lengths, other keys: take the runs one by one
            else:
                self._insert_records(cols, records, schema, kind)
                return
        for run in _runs(rows):
            if run[0]:
                cols = list(run[0])
                self._insert_records(cols, list(map(_getter(cols), run)), schema, kind)

    def _insert_records(self, cols: list[str], records: Sequence[Sequence[Any]],
                        schema: Schema | None, kind: str) -> None:
        """Insert ``records``: value sequences in the order of ``cols``."""
        if kind != "insert" and not self._pk and schema is not None and schema.primary_key:
            self._pk = tuple(schema.primary_key)
        if kind != "insert" and not self._pk:
            raise ConfigError(f"SqliteSink({self.table!r}): write_mode {self.write_mode.value!r} "
                              "needs primary_key")
        conn = self._conn
        assert conn is not None
        fitted = self._fit(cols, records, schema)
        if not fitted:
            return
        if fitted != cols:  # columns discarded by the schema policy
            pick = _getter([cols.index(c) for c in fitted])
            records, cols = list(map(pick, records)), fitted
        types = set(map(type, chain.from_iterable(records))) if self.json_batches else None
        payload = None
        if types is not None and types <= _TEXT_TYPES:
            # one JSON array, inserted by one statement that runs without the GIL; NUL
            # characters (SQLite's JSON functions cut them) take the executemany path
            payload = _JSON.encode(records)
            if b"\\u0000" in payload:
                payload = None
        # Values are bound as they are unless the first record (or the scan) shows a type
        # that needs the explicit mapping; a later value sqlite3 cannot bind makes it refuse
        # the row, and the batch is rolled back to the savepoint and bound mapped. (sqlite3's
        # own datetime/date adapters write the same ISO text as the mapping.)
        mapped = (not set(map(type, records[0])) <= NATIVE
                  or (types is not None and not types <= NATIVE))
        conn.execute("SAVEPOINT etlsync_batch")
        try:
            if payload is not None:
                conn.execute(self._insert_sql(tuple(cols), kind, json=True), (payload,))
            elif mapped:
                self._insert_values(tuple(cols), kind, list(_mapped(records)))
            else:
                try:
                    self._insert_values(tuple(cols), kind, records)
                except _BIND_ERRORS:
                    conn.execute("ROLLBACK TO etlsync_batch")
                    self._insert_values(tuple(cols), kind, list(_mapped(records)))
        except sqlite3.IntegrityError as exc:
            if kind != ConflictStrategy.FAIL.value:
                raise
            conn.execute("ROLLBACK TO etlsync_batch")
            self._raise_conflict(cols, _adapt_rows(records), exc)
        finally:
            conn.execute("RELEASE etlsync_batch")

    def _insert_values(self, cols: tuple[str, ...], kind: str,
                       records: Sequence[Sequence[Any]]) -> None:
        """Run the insert for ``records``, many rows per statement.

        One ``INSERT ... VALUES (...), (...), ...`` of up to ``_ROWS_PER_STATEMENT`` rows costs
        about a third less CPU than ``executemany`` of one-row statements, and its step runs
        that many rows without the GIL, so the source parses meanwhile. Rows are applied in
        order, as by ``executemany`` (a key repeated in the batch upserts onto the earlier row).
        """
        conn = self._conn
        assert conn is not None
        per = max(1, min(_ROWS_PER_STATEMENT, self._max_variables // max(1, len(cols))))
        n = len(records)
        whole = n - n % per if per > 1 else 0
        if whole:
            sql, flat = self._insert_sql(cols, kind, rows=per), chain.from_iterable
            for i in range(0, whole, per):
                conn.execute(sql, list(flat(records[i:i + per])))
        if whole < n:
            conn.executemany(self._insert_sql(cols, kind), records[whole:])

    def _raise_conflict(self, cols: list[str], tuples: Sequence[Sequence[Any]],
                        exc: sqlite3.IntegrityError) -> None:
        assert self._conn is not None
        idx = [cols.index(k) for k in self._pk if k in cols]
        where = " AND ".join(f"{quote(k)} = ?" for k in self._pk)
        sql = f"SELECT 1 FROM {quote(self._target)} WHERE {where}"
        seen: set[tuple[Any, ...]] = set()
        for t in tuples:
            key = tuple(t[i] for i in idx)
            if key in seen or self._conn.execute(sql, key).fetchone():
                shown = dict(zip(self._pk, key, strict=True))
                raise ConflictError(f"SqliteSink({self.table!r}): key {shown} already exists "
                                    "(conflict='fail')") from exc
            seen.add(key)
        raise exc

    # -- schema ----------------------------------------------------------------------------
    def _columns(self, table: str) -> dict[str, str] | None:
        assert self._conn is not None
        info = self._conn.execute(f"PRAGMA table_info({quote(table)})").fetchall()
        return {r[1]: r[2] for r in info} if info else None

    def _table_pk(self, table: str) -> tuple[str, ...]:
        assert self._conn is not None
        info = self._conn.execute(f"PRAGMA table_info({quote(table)})").fetchall()
        return tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))

    def _needs_key_index(self) -> bool:
        return self.write_mode == WriteMode.UPSERT

    def _ensure_key_index(self, table: str) -> None:
        conn = self._conn
        assert conn is not None
        want = {k.lower() for k in self._pk}
        if {k.lower() for k in self._table_pk(table)} == want:
            return
        for idx in conn.execute(f"PRAGMA index_list({quote(table)})").fetchall():
            if idx[2]:
                cols = conn.execute(f"PRAGMA index_info({quote(idx[1])})").fetchall()
                if {c[2].lower() for c in cols} == want:
                    return
        conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {quote(table + '_etlsync_pk')} ON "
                     f"{quote(table)} ({', '.join(quote(k) for k in self._pk)})")

    def _create(self, table: str, columns: list[tuple[str, str]]) -> None:
        assert self._conn is not None
        defs = [f"{quote(name)} {decl}".rstrip() for name, decl in columns]
        names = {n.lower() for n, _ in columns}
        missing = [k for k in self._pk if k.lower() not in names]
        if missing:
            raise SchemaError(f"SqliteSink({self.table!r}): primary key columns {missing} are "
                              "not in the rows")
        if self._pk:
            defs.append(f"PRIMARY KEY ({', '.join(quote(k) for k in self._pk)})")
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(table)} ({', '.join(defs)})")
        self._cols = self._columns(table)

    def _declared(self, name: str, values: Iterable[Any], schema: Schema | None) -> str:
        if schema is not None and name in schema:
            ct = schema.column(name).type
            if ct != ColumnType.UNKNOWN:
                return DECLARED[ct]
        for v in values:
            if v is not None:
                return DECLARED[type_of_value(v)]
        return ""

    def _fit(self, cols: list[str], records: Sequence[Sequence[Any]],
             schema: Schema | None) -> list[str]:
        """Create the table or apply the schema policy to columns it lacks; the columns to
        write."""
        if self._cols is None:
            if schema is not None and not self._pk and schema.primary_key:
                self._pk = tuple(schema.primary_key)
            self._create(self._target, [(c, self._declared(c, (r[i] for r in records), schema))
                                        for i, c in enumerate(cols)])
            return cols
        known = {c.lower() for c in self._cols}
        new = [c for c in cols if c.lower() not in known]
        if not new:
            return cols
        if self.schema_policy == SchemaPolicy.FREEZE:
            raise SchemaError(f"SqliteSink({self.table!r}): column {new[0]!r} is not in the "
                              "table (schema_policy='freeze')")
        if self.schema_policy == SchemaPolicy.DISCARD:
            return [c for c in cols if c.lower() in known]
        assert self._conn is not None
        for c in new:
            i = cols.index(c)
            decl = self._declared(c, (r[i] for r in records), schema)
            self._conn.execute(f"ALTER TABLE {quote(self._target)} ADD COLUMN "
                               f"{quote(c)} {decl}".rstrip())
        self._cols = self._columns(self._target)
        self._sql = {}
        return cols

    def _insert_sql(self, cols: tuple[str, ...], kind: str, json: bool = False,
                    rows: int = 1) -> str:
        key = (cols, kind, json, rows)
        sql = self._sql.get(key)
        if sql is not None:
            return sql
        names = ", ".join(quote(c) for c in cols)
        if json:
            values = ", ".join(f"value ->> {i}" if _ARROW else f"json_extract(value, '$[{i}]')"
                               for i in range(len(cols)))
            sql = (f"INSERT INTO {quote(self._target)} ({names}) "
                   f"SELECT {values} FROM json_each(?) WHERE true")
        else:
            one = f"({', '.join('?' * len(cols))})"
            sql = f"INSERT INTO {quote(self._target)} ({names}) VALUES {', '.join([one] * rows)}"
        pk = {k.lower() for k in self._pk}
        if kind in ("skip", "overwrite", "merge"):
            if kind == "overwrite":
                assert self._cols is not None
                sets = [c for c in self._cols if c.lower() not in pk]
            else:
                sets = [c for c in cols if c.lower() not in pk]
            target = ", ".join(quote(k) for k in self._pk)
            if kind == "skip" or not sets:
                sql += f" ON CONFLICT ({target}) DO NOTHING"
            else:
                assignments = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in sets)
                sql += f" ON CONFLICT ({target}) DO UPDATE SET {assignments}"
        self._sql[key] = sql
        return sql
