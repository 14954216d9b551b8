"""PostgreSQL sink: COPY appends (typed values rendered as COPY text where exact, else binary;
record-form batches never become dicts), atomic overwrite, upsert (batches of new keys COPYed
straight in, else through a staging table with one ``INSERT ... ON CONFLICT`` per batch), CDC
changes, schema policy, and the position written in each batch's transaction (exactly-once)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from etlsync.connectors.postgres import journal
from etlsync.connectors.postgres.arrowcopy import column_type
from etlsync.connectors.postgres.changes import (
    group_upserts,
    insert_group,
    net_changes,
    plain_group,
    show_key,
)
from etlsync.connectors.postgres.checkpoint import (
    DEFAULT_STATE_TABLE,
    PostgresCheckpointStore,
    ensure_state_table,
    write_checkpoint,
)
from etlsync.connectors.postgres.connection import PgConnectionConfig, qualified, quote_ident
from etlsync.connectors.postgres.payload import Rows, copy_rows
from etlsync.connectors.postgres.types import (
    UNCHANGED,
    describe_table,
    pg_type_for,
    table_oid,
)
from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError, ConflictError, SchemaError
from etlsync.core.modes import ConflictStrategy, SchemaPolicy, WriteMode
from etlsync.core.options import renamed_keywords
from etlsync.core.schema import Column, ColumnType, Schema, infer_type
from etlsync.core.stages import Sink, StageContext
from etlsync.core.tracker import TicketHold
from etlsync.log import get_logger

_stage_ids = itertools.count(1)

# an immediate, valid, non-partial unique index whose key columns are all among $2
_KEY_GUARD_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_index i
  WHERE i.indrelid = $1::oid AND i.indisunique AND i.indimmediate AND i.indisvalid
    AND i.indpred IS NULL AND i.indexprs IS NULL
    AND NOT EXISTS (
      SELECT 1 FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) AS k(attnum)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE a.attname <> ALL($2::text[])))
"""


def _rows_of(batch: Batch) -> Rows:
    """The batch's rows for COPY, without building dicts for a record-form batch (nor
    records for an arrow-form one)."""
    if batch.arrow is not None and batch.columns is not None:
        return Rows(names=batch.columns, table=batch.arrow)
    records = batch.records
    if records is not None and batch.columns is not None:
        return Rows(names=batch.columns, records=records)
    return Rows(batch.rows)


class PostgresSink(journal.PgJournaled, Sink):
    """Writes batches into ``schema.table``.

    :param dsn: DSN string or :class:`PgConnectionConfig`; other connection keywords
        (``host``, ``password_env``, ``sslmode``, ``sslrootcert``, ...) are accepted too.
    :param write_mode: ``append`` (COPY), ``overwrite`` (load into a new table, swap
        it in atomically at the end of the source's pass, in the transaction that stores
        the final checkpoint) or ``upsert`` (on ``primary_key``).
    :param primary_key: target key columns (default: the table's, or the batch schema's).
    :param conflict: for upserts: ``skip``, ``overwrite``, ``merge`` or ``fail``.
    :param schema_policy: for source columns the target lacks: ``evolve`` (add them),
        ``freeze`` (raise :class:`SchemaError`) or ``discard`` (drop the values).
    :param column_map: source column name -> target column name.
    :param type_map: target column name -> PostgreSQL type, used when creating columns.
    :param create: create the table when it is missing.
    :param text_copy: render values into COPY text where every column's values render
        exactly (much cheaper than asyncpg's binary encoding); ``False`` always uses binary.
    :param exactly_once: ``TRANSACTIONAL``: write the pipeline's checkpoint into
        ``state_table`` in each batch's transaction; :meth:`checkpoint_store` reads it.
    """

    @renamed_keywords({"dsn": "connection"})
    def __init__(
        self,
        connection: PgConnectionConfig | str | Mapping[str, Any] | None = None,
        *,
        table: str,
        schema: str = "public",
        write_mode: WriteMode | str = WriteMode.APPEND,
        primary_key: Sequence[str] = (),
        conflict: ConflictStrategy | str = ConflictStrategy.OVERWRITE,
        schema_policy: SchemaPolicy | str = SchemaPolicy.EVOLVE,
        column_map: Mapping[str, str] | None = None,
        type_map: Mapping[str, str] | None = None,
        create: bool = True,
        exactly_once: bool = True,
        state_table: str = DEFAULT_STATE_TABLE,
        state_schema: str | None = None,
        name: str = "postgres",
        text_copy: bool = True,
        **connect_kw: Any,
    ) -> None:
        self.config = PgConnectionConfig.coerce(connection, **connect_kw)
        self.table = table
        self.schema = schema
        try:
            self.write_mode = WriteMode(write_mode)
            self.conflict = ConflictStrategy(conflict)
            self.schema_policy = SchemaPolicy(schema_policy)
        except ValueError as exc:
            raise ConfigError(f"PostgresSink({table!r}): {exc}") from None
        for name_ in (table, schema, state_table, state_schema or schema):
            quote_ident(name_)  # a NUL byte is refused here, not by the server mid-run
        self.primary_key = tuple(primary_key)
        self.column_map = dict(column_map or {})
        self.type_map = dict(type_map or {})
        self.create = create
        self.exactly_once = exactly_once
        self.state_table = state_table
        self.state_schema = state_schema or schema
        self.name = name
        self.text_copy = text_copy
        self.capabilities = frozenset(
            {Capability.CHANGES, Capability.KEYED, Capability.REVERSIBLE}
            | ({Capability.TRANSACTIONAL} if exactly_once else set()))
        self.log = get_logger(sink=name, table=table)
        self._conn: asyncpg.Connection | None = None
        self._context: StageContext | None = None
        self._target: Schema | None = None
        self._write_table = table
        self._pk: tuple[str, ...] = ()
        self._stage: str | None = None
        self._stage_cols: tuple[str, ...] = ()
        self._last_cols: tuple[str, ...] | None = None
        self._last_pairs: list[tuple[str, str]] = []
        self._overwrite_ready = False
        self._held = TicketHold()
        self._warned_deletes = False
        self._key_guard: dict[str, bool] = {}
        self._keys_new = True  # the last insert-only attempt found only new keys

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def connection(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError(f"sink {self.name!r} is not open")
        return self._conn

    def checkpoint_store(self) -> PostgresCheckpointStore | None:
        """A store reading the checkpoints this sink writes (``exactly_once``)."""
        if not self.exactly_once:
            return None
        return PostgresCheckpointStore(self.config, schema=self.state_schema,
                                       table=self.state_table)

    async def open(self, context: StageContext) -> None:
        self._context = context
        self._conn = conn = await self.config.connect()
        if self.exactly_once:
            await ensure_state_table(conn, self.state_schema, self.state_table)
        if self._journal_run is not None:
            await journal.start(conn, self._journal_run, self.schema, self.table,
                                self.state_schema)
        self._target = await describe_table(conn, self.schema, self.table)
        self._pk = self.primary_key or (self._target.primary_key if self._target else ())
        if self.write_mode is WriteMode.UPSERT and self._target is not None and not self._pk:
            raise ConfigError(f"upsert into {self.schema}.{self.table} needs a primary key: the "
                              "table has none and no primary_key was given")

    async def describe(self) -> Schema | None:
        conn = self._conn or await self.config.connect()
        try:
            return await describe_table(conn, self.schema, self.table)
        finally:
            if conn is not self._conn:
                await conn.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            await conn.close()

    # -- writing -----------------------------------------------------------------------
    async def write(self, batch: Batch) -> None:
        conn = self.connection
        ctx = self._context
        assert ctx is not None
        try:
            pairs = await self._prepare(conn, batch) if len(batch) else []
            checkpoint = ctx.checkpoint_for(batch)
            end_of_pass = batch.end_of_pass and self.write_mode is WriteMode.OVERWRITE
            if end_of_pass and not self._overwrite_ready and self._target is not None:
                await self._prepare_overwrite(conn)  # a resumed or empty pass still swaps
            async with conn.transaction():
                if len(batch):
                    if self.write_mode is WriteMode.UPSERT:
                        await self._upsert(conn, batch, pairs)
                    else:
                        await self._append(conn, batch, pairs)
                if end_of_pass and self._overwrite_ready:
                    await self._swap_in(conn)  # atomic with the checkpoint: exactly-once
                if checkpoint is not None:
                    await write_checkpoint(conn, self.state_schema, self.state_table,
                                           ctx.pipeline, checkpoint)
        except BaseException:
            self._stage = None  # created in the rolled-back transaction, or still there
            raise
        if self.write_mode is WriteMode.OVERWRITE and not ctx.owns_checkpoint:
            # nothing may be committed before the new table is swapped in
            if end_of_pass:
                self._held.release()
            else:
                self._held.add(batch)

    async def _append(self, conn: asyncpg.Connection, batch: Batch,
                      pairs: list[tuple[str, str]]) -> None:
        if batch.ops is None:
            await self._copy(conn, self._write_table, self.schema, pairs, _rows_of(batch))
            return
        if any(op == "truncate" for op in batch.ops):
            await conn.execute(f"TRUNCATE {qualified(self.schema, self._write_table)}")
        if not self._warned_deletes and any(op == "delete" for op in batch.ops):
            self._warned_deletes = True
            self.log.warning("append mode ignores deletes; use write_mode='upsert'")
        rows = [r for op, r in batch.iter_changes() if op in ("insert", "update")]
        rows = [{k: (None if v is UNCHANGED else v) for k, v in r.items()} for r in rows]
        if not rows:
            return
        await self._copy(conn, self._write_table, self.schema, pairs, rows)

    async def _upsert(self, conn: asyncpg.Connection, batch: Batch,
                      pairs: list[tuple[str, str]]) -> None:
        tgt_of = dict(pairs)
        src_of = {t: s for s, t in pairs}
        pk_src = [src_of.get(c, self._source_name(c)) for c in self._pk]
        groups = plain_group(batch, pk_src, self.conflict) if batch.ops is None else \
            insert_group(batch, pk_src, self.conflict)
        if groups is not None and await self._insert_new(conn, groups, pk_src, tgt_of):
            return
        if groups is None:
            net = net_changes(batch, pk_src, self.conflict)
            if net.must_be_absent:
                await self._check_absent(conn, list(net.must_be_absent))
            if net.truncate:
                await conn.execute(f"TRUNCATE {qualified(self.schema, self._write_table)}")
            if net.deletes:
                await self._delete(conn, list(net.deletes))
            groups = group_upserts(net)
        if not groups:
            return
        stage = await self._ensure_stage(conn)
        first = True
        for (cols, mode, unchanged, update), rows in groups.items():
            live = [(s, tgt_of[s]) for s in cols if s in tgt_of]
            if not first:
                await conn.execute(f"TRUNCATE {quote_ident(stage)}")
            first = False
            await self._copy(conn, stage, None, live, rows)
            await self._merge_stage(conn, stage, [t for _, t in live], mode,
                                    {tgt_of.get(c, c) for c in unchanged},
                                    {tgt_of[c] for c in update if c in tgt_of})

    async def _insert_new(self, conn: asyncpg.Connection, groups: dict[Any, list[Row] | Rows],
                          pk_src: list[str], tgt_of: dict[str, str]) -> bool:
        """Insert-only fast path: when no key of a plain batch is stored yet, COPY it straight
        into the table (in a savepoint; a key inserted concurrently makes it fall back to the
        staged upsert). Returns whether the batch was written."""
        ((cols, *_), rows), = groups.items()
        if any(p not in tgt_of for p in pk_src):
            return False
        # a unique index on the key rejects a stored key by itself; look the keys up first
        # only without one, or when the last batch held stored keys (a failed COPY costs more)
        if not (self._keys_new and await self._key_guarded(conn)):
            data = Rows.of(rows)
            keys = list(zip(*(data.column(p) for p in pk_src), strict=True))
            cond, args = self._keys_in(keys)
            if await conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {qualified(self.schema, self._write_table)} "
                    f"WHERE {cond})", *args):
                self._keys_new = False
                return False
        live = [(s, tgt_of[s]) for s in cols if s in tgt_of]
        try:
            async with conn.transaction():
                await self._copy(conn, self._write_table, self.schema, live, rows)
        except asyncpg.UniqueViolationError:
            self._keys_new = False
            return False
        self._keys_new = True
        return True

    async def _copy(self, conn: asyncpg.Connection, table: str, schema: str | None,
                    pairs: Sequence[tuple[str, str]], rows: Sequence[Row] | Rows) -> None:
        """COPY ``rows`` into ``table`` (see :func:`copy_rows`)."""
        natives = None
        if self.text_copy and self._target is not None:
            natives = [self._target.column(t).native for _, t in pairs]
        await copy_rows(conn, table, schema, pairs, Rows.of(rows), natives,
                        self._json_positions(pairs))

    async def _key_guarded(self, conn: asyncpg.Connection) -> bool:
        """Whether an immediate unique index on (some of) the key columns guards the table
        written to (cached per table name; forgotten when tables are created or swapped)."""
        guarded = self._key_guard.get(self._write_table)
        if guarded is None:
            oid = await table_oid(conn, self.schema, self._write_table)
            guarded = oid is not None and bool(
                await conn.fetchval(_KEY_GUARD_SQL, oid, list(self._pk)))
            self._key_guard[self._write_table] = guarded
        return guarded

    async def _merge_stage(self, conn: asyncpg.Connection, stage: str, cols: list[str],
                           mode: ConflictStrategy, unchanged: set[str],
                           update: set[str]) -> None:
        assert self._target is not None
        target = qualified(self.schema, self._write_table)
        col_sql = ", ".join(quote_ident(c) for c in cols)
        pk_sql = ", ".join(quote_ident(c) for c in self._pk)
        if mode is ConflictStrategy.FAIL:
            on = " AND ".join(f"t.{quote_ident(c)} = s.{quote_ident(c)}" for c in self._pk)
            hit = await conn.fetchrow(
                f"SELECT {', '.join('s.' + quote_ident(c) for c in self._pk)} "
                f"FROM {quote_ident(stage)} s JOIN {target} t ON {on} LIMIT 1")
            if hit is not None:
                raise ConflictError(f"key {show_key(self._pk, list(hit.values()))} already exists "
                                    f"in {self.schema}.{self.table} (conflict strategy 'fail')")
            action = ""
        elif mode is ConflictStrategy.SKIP:
            action = f" ON CONFLICT ({pk_sql}) DO NOTHING"
        else:
            sets = [f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in cols
                    if c not in self._pk and (mode is ConflictStrategy.OVERWRITE or c in update)]
            if mode is ConflictStrategy.OVERWRITE:
                sets += [f"{quote_ident(c)} = NULL" for c in self._target.names
                         if c not in cols and c not in self._pk and c not in unchanged]
            action = (f" ON CONFLICT ({pk_sql}) DO UPDATE SET {', '.join(sets)}" if sets
                      else f" ON CONFLICT ({pk_sql}) DO NOTHING")
        try:
            await conn.execute(f"INSERT INTO {target} ({col_sql}) "
                               f"SELECT {col_sql} FROM {quote_ident(stage)}{action}")
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"{self.schema}.{self.table}: {exc.detail or exc}") from exc

    def _keys_in(self, keys: list[tuple[Any, ...]]) -> tuple[str, list[list[Any]]]:
        """A ``WHERE`` condition matching the primary keys ``keys``, and its arguments."""
        assert self._target is not None
        types = [self._target.column(c).native for c in self._pk]
        args = [list(col) for col in zip(*keys, strict=True)]
        if len(self._pk) == 1:
            return f"{quote_ident(self._pk[0])} = ANY($1::{types[0]}[])", args
        unnest = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
        cols = ", ".join(quote_ident(c) for c in self._pk)
        return f"({cols}) IN (SELECT * FROM unnest({unnest}))", args

    async def _delete(self, conn: asyncpg.Connection, keys: list[tuple[Any, ...]]) -> None:
        cond, args = self._keys_in(keys)
        await conn.execute(
            f"DELETE FROM {qualified(self.schema, self._write_table)} WHERE {cond}", *args)

    async def _check_absent(self, conn: asyncpg.Connection, keys: list[tuple[Any, ...]]) -> None:
        cond, args = self._keys_in(keys)
        pk = ", ".join(quote_ident(c) for c in self._pk)
        hit = await conn.fetchrow(f"SELECT {pk} FROM {qualified(self.schema, self._write_table)} "
                                  f"WHERE {cond} LIMIT 1", *args)
        if hit is not None:
            raise ConflictError(f"key {show_key(self._pk, list(hit.values()))} already exists "
                                f"in {self.schema}.{self.table} (conflict strategy 'fail')")

    async def _ensure_stage(self, conn: asyncpg.Connection) -> str:
        assert self._target is not None
        cols = tuple(self._target.names)
        if self._stage is not None and cols == self._stage_cols:
            return self._stage
        if self._stage is not None:
            await conn.execute(f"DROP TABLE IF EXISTS {quote_ident(self._stage)}")
        self._stage = f"_etlsync_stage_{next(_stage_ids)}"
        self._stage_cols = cols
        await conn.execute(
            f"CREATE TEMP TABLE {quote_ident(self._stage)} ON COMMIT DELETE ROWS AS "
            f"SELECT * FROM {qualified(self.schema, self._write_table)} WITH NO DATA")
        return self._stage

    def _json_positions(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        if self._target is None:
            return []
        out = []
        for i, (_, t) in enumerate(pairs):
            if t in self._target and self._target.column(t).type is ColumnType.JSON \
                    and not self._target.column(t).native.endswith("[]"):
                out.append(i)
        return out

    def _source_name(self, target: str) -> str:
        for s, t in self.column_map.items():
            if t == target:
                return s
        return target

    # -- schema ------------------------------------------------------------------------
    async def _prepare(self, conn: asyncpg.Connection, batch: Batch) -> list[tuple[str, str]]:
        """Create / evolve the target for this batch; return (source, target) column pairs."""
        if batch.columns is not None:
            src_cols = batch.columns
        else:
            rows = batch.rows
            first = tuple(rows[0])
            names = set().union(*rows)
            src_cols = first if len(names) == len(first) else (
                first + tuple(sorted(names.difference(first))))
        if src_cols == self._last_cols and self._target is not None and self._overwrite_ready_ok():
            return self._last_pairs
        if self._target is None:
            if not self.create:
                raise ConfigError(f"table {self.schema}.{self.table} does not exist and "
                                  "create=False")
            await self._create(conn, self.table, batch, src_cols)
        if self.write_mode is WriteMode.OVERWRITE and not self._overwrite_ready:
            await self._prepare_overwrite(conn)
        assert self._target is not None
        pairs: list[tuple[str, str]] = []
        missing: list[Column] = []
        for s in src_cols:
            t = self.column_map.get(s, s)
            if t in self._target:
                pairs.append((s, t))
            elif self.schema_policy is SchemaPolicy.FREEZE:
                raise SchemaError(f"column {s!r} of stream {batch.stream!r} is not in "
                                  f"{self.schema}.{self.table} and schema_policy is 'freeze'")
            elif self.schema_policy is SchemaPolicy.EVOLVE:
                missing.append(self._column_for(s, t, batch))
                pairs.append((s, t))
        if missing:
            for table in {self.table, self._write_table}:
                for col in missing:
                    pg = self.type_map.get(col.name) or pg_type_for(col)
                    await conn.execute(
                        f"ALTER TABLE {qualified(self.schema, table)} ADD COLUMN IF NOT EXISTS "
                        f"{quote_ident(col.name)} {pg}")
            self.log.info("added columns", columns=[c.name for c in missing])
            self._target = await describe_table(conn, self.schema, self._write_table)
        self._last_cols, self._last_pairs = src_cols, pairs
        return pairs

    def _overwrite_ready_ok(self) -> bool:
        return self.write_mode is not WriteMode.OVERWRITE or self._overwrite_ready

    def _column_for(self, source: str, target: str, batch: Batch) -> Column:
        if batch.schema is not None and source in batch.schema:
            c = batch.schema.column(source)
            return Column(target, c.type, c.nullable, c.native)
        table = batch.arrow
        if table is not None:
            return Column(target, column_type(table.schema.field(source).type))
        values = _rows_of(batch).column(source)
        value = next((v for v in values if v is not None and v is not UNCHANGED), None)
        return Column(target, ColumnType.STRING if value is None else infer_type(value))

    async def _create(self, conn: asyncpg.Connection, table: str, batch: Batch,
                      src_cols: Sequence[str]) -> None:
        names = list(batch.schema.names) if batch.schema is not None else []
        names += [c for c in src_cols if c not in names]
        cols = [self._column_for(s, self.column_map.get(s, s), batch) for s in names]
        pk = self.primary_key or tuple(
            self.column_map.get(c, c) for c in (batch.schema.primary_key if batch.schema else ()))
        defs = []
        for c in cols:
            pg = self.type_map.get(c.name) or pg_type_for(c)
            defs.append(f"{quote_ident(c.name)} {pg}{' NOT NULL' if c.name in pk else ''}")
        if pk:
            defs.append(f"PRIMARY KEY ({', '.join(quote_ident(c) for c in pk)})")
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {qualified(self.schema, table)} "
                           f"({', '.join(defs)})")
        self.log.info("created table", columns=[c.name for c in cols], primary_key=list(pk))
        self._target = await describe_table(conn, self.schema, table)
        self._key_guard.clear()
        self._pk = self.primary_key or (self._target.primary_key if self._target else ())
        if self.write_mode is WriteMode.UPSERT and not self._pk:
            raise ConfigError(f"upsert into {self.schema}.{table} needs primary_key")

    # -- overwrite ---------------------------------------------------------------------
    @property
    def _new_table(self) -> str:
        return f"{self.table[:40]}__etlsync_new"

    async def _prepare_overwrite(self, conn: asyncpg.Connection) -> None:
        """Load into ``<table>__etlsync_new``; keep it when this run continues a pass a
        crashed run left open (its rows are there), else start it empty."""
        new = self._new_table
        resume = self._context is not None and self._context.resuming_pass
        exists = await describe_table(conn, self.schema, new) is not None
        if exists and not resume:
            await conn.execute(f"DROP TABLE {qualified(self.schema, new)}")
            exists = False
        if not exists:
            await conn.execute(f"CREATE TABLE {qualified(self.schema, new)} "
                               f"(LIKE {qualified(self.schema, self.table)} INCLUDING ALL)")
        self._write_table = new
        self._key_guard.clear()
        self._target = await describe_table(conn, self.schema, new)
        self._overwrite_ready = True

    async def _swap_in(self, conn: asyncpg.Connection) -> None:
        """Replace the table by the new one (inside the caller's transaction)."""
        # dropped, or kept to revert
        await journal.retire(conn, self._journal_run, self.schema, self.table, self.state_schema)
        await conn.execute(f"ALTER TABLE {qualified(self.schema, self._new_table)} "
                           f"RENAME TO {quote_ident(self.table)}")
        self.log.info("overwrite swapped in")
        self._write_table = self.table
        self._key_guard.clear()
        self._overwrite_ready = False
        self._last_cols = None
        self._stage = None

