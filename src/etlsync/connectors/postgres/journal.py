"""What one run changed in a PostgreSQL table, recorded so the run can be reverted.

While a sink journals a run, its session carries ``etlsync.journal_run = <run id>``, and
statement-level triggers on the target (``AFTER INSERT / UPDATE / DELETE`` with transition
tables, ``BEFORE TRUNCATE``) copy what each statement changed into
``<state schema>._etlsync_journal``: the new rows of inserts (as ``jsonb``), the prior rows of
updates, deletes and truncates, in the sink's own transaction. Sessions without the setting
(every other writer) pass through the triggers untouched. Markers in
``_etlsync_journal_runs`` say what the run found (the table's columns and key, or that it did
not exist) and which table an overwrite replaced (kept, renamed, until ``forget``).

A revert applies the records newest first, a group of same-kind changes per statement, in
one transaction: inserted rows are deleted (by key; a table without one by equal rows, as
many as were inserted), updated and deleted rows get their prior values back, added columns
are dropped, a replaced table comes back, a created one goes. ``json`` (not ``jsonb``) values
come back in ``jsonb``'s normalised text.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

import asyncpg

from etlsync.connectors.postgres.checkpoint import write_checkpoint
from etlsync.connectors.postgres.connection import PgConnectionConfig, qualified, quote_ident
from etlsync.core.revert import Journaled, RevertError, RevertReport, Rewind

SETTING = "etlsync.journal_run"
JOURNAL = "_etlsync_journal"
MARKERS = "_etlsync_journal_runs"


def _ddl(s: str) -> list[str]:
    j, m = qualified(s, JOURNAL), qualified(s, MARKERS)
    # names that no user column will shadow inside the trigger functions
    run, tbl, row = "etlsync_run_", "etlsync_tbl_", "etlsync_row_"
    gate = (f"DECLARE {run} text := current_setting('{SETTING}', true); "
            f"{tbl} text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME; "
            f"BEGIN IF {run} IS NULL OR {run} = '' THEN RETURN NULL; END IF; ")
    insert = f"INSERT INTO {j} (run_id, tbl, op, img) SELECT {run}, {tbl}"
    fns = {
        "i": f"{insert}, 'I', to_jsonb({row}) FROM etlsync_new {row};",
        "u": f"{insert}, 'U', to_jsonb({row}) FROM etlsync_old {row};",
        "d": f"{insert}, 'D', to_jsonb({row}) FROM etlsync_old {row};",
        "t": f"EXECUTE format('INSERT INTO {j} (run_id, tbl, op, img) SELECT $1, $2, ''D'', "
             f"to_jsonb({row}) FROM %I.%I {row}', TG_TABLE_SCHEMA, TG_TABLE_NAME) "
             f"USING {run}, {tbl};",
    }
    out = [f"CREATE TABLE IF NOT EXISTS {j} (seq bigserial PRIMARY KEY, run_id text NOT NULL, "
           "tbl text NOT NULL, op char(1) NOT NULL, img jsonb NOT NULL)",
           f"CREATE INDEX IF NOT EXISTS {quote_ident(JOURNAL + '_run')} ON {j} (run_id, tbl)",
           f"CREATE TABLE IF NOT EXISTS {m} (id bigserial PRIMARY KEY, run_id text NOT NULL, "
           "tbl text NOT NULL, kind char(1) NOT NULL, detail jsonb, "
           "at timestamptz NOT NULL DEFAULT now())"]
    for name, body in fns.items():
        out.append(f"CREATE OR REPLACE FUNCTION {qualified(s, JOURNAL + '_' + name)}() "
                   f"RETURNS trigger LANGUAGE plpgsql AS $fn$ {gate}{body} RETURN NULL; END $fn$")
    return out


_TRIGGERS = (
    ("i", "AFTER INSERT", "REFERENCING NEW TABLE AS etlsync_new"),
    ("u", "AFTER UPDATE", "REFERENCING OLD TABLE AS etlsync_old"),
    ("d", "AFTER DELETE", "REFERENCING OLD TABLE AS etlsync_old"),
    ("t", "BEFORE TRUNCATE", ""),
)


async def _columns(conn: asyncpg.Connection, schema: str, table: str
                   ) -> tuple[list[str], list[str]] | None:
    """The table's insertable columns and its primary key, or ``None`` if it is absent."""
    oid = await conn.fetchval("SELECT to_regclass($1)::oid", qualified(schema, table))
    if oid is None:
        return None
    cols = await conn.fetch("SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 "
                            "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum", oid)
    pk = await conn.fetch(
        "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(n, o) "
        "ON true JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n "
        "WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.o", oid)
    return [r[0] for r in cols], [r[0] for r in pk]


async def start(conn: asyncpg.Connection, run_id: str, schema: str, table: str,
                state_schema: str) -> None:
    """Record ``run_id``'s changes to ``schema.table`` made on ``conn`` from now on."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('etlsync_journal_ddl'))")
        for sql in _ddl(state_schema):
            await conn.execute(sql)
        found = await _columns(conn, schema, table)
        target = qualified(schema, table)
        if found is None:
            await _mark(conn, state_schema, run_id, f"{schema}.{table}", "C", None)
        else:
            have = {r[0] for r in await conn.fetch(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass", target)}
            for name, when, ref in _TRIGGERS:
                trigger = f"_etlsync_journal_{name}"
                if trigger not in have:
                    each = "FOR EACH STATEMENT"
                    await conn.execute(
                        f"CREATE TRIGGER {quote_ident(trigger)} {when} ON {target} {ref} {each} "
                        f"EXECUTE FUNCTION {qualified(state_schema, JOURNAL + '_' + name)}()")
            await _mark(conn, state_schema, run_id, f"{schema}.{table}", "T",
                        {"columns": found[0], "key": found[1]})
    await conn.execute("SELECT set_config($1, $2, false)", SETTING, run_id)


async def _mark(conn: asyncpg.Connection, state_schema: str, run_id: str, target: str,
                kind: str, detail: dict[str, Any] | None) -> None:
    await conn.execute(f"INSERT INTO {qualified(state_schema, MARKERS)} (run_id, tbl, kind, "
                       "detail) VALUES ($1, $2, $3, $4::jsonb)", run_id, target, kind,
                       None if detail is None else json.dumps(detail))


async def retire(conn: asyncpg.Connection, run_id: str | None, schema: str, table: str,
                 state_schema: str) -> None:
    """An overwrite replaces ``schema.table`` (in the caller's transaction): keep the old
    table, renamed, when journaling ``run_id``; else drop it."""
    target = qualified(schema, table)
    if run_id is None or await conn.fetchval("SELECT to_regclass($1)", target) is None:
        await conn.execute(f"DROP TABLE IF EXISTS {target}")
        return
    prev = f"_etlsync_prev_{zlib.crc32(run_id.encode()):08x}_{table[:30]}"
    await conn.execute(f"DROP TABLE IF EXISTS {qualified(schema, prev)}")
    await conn.execute(f"ALTER TABLE {target} RENAME TO {quote_ident(prev)}")
    await _mark(conn, state_schema, run_id, f"{schema}.{table}", "S", {"prev": prev})


async def revert(conn: asyncpg.Connection, run_id: str, schema: str, table: str,
                 state_schema: str, rewind: Rewind | None, state_table: str,
                 force: bool) -> RevertReport:
    """Undo ``run_id``'s recorded changes to ``schema.table`` in one transaction."""
    target, key = qualified(schema, table), f"{schema}.{table}"
    report = RevertReport(target=f"postgres table {key}")
    m = qualified(state_schema, MARKERS)
    async with conn.transaction():
        if await conn.fetchval("SELECT to_regclass($1)", m) is None:
            raise RevertError(f"nothing was recorded for run {run_id} in {schema}.{table}")
        markers = await conn.fetch(f"SELECT id, kind, detail::text FROM {m} WHERE run_id = $1 "
                                   "AND tbl = $2 ORDER BY id", run_id, key)
        if not markers:
            raise RevertError(f"nothing was recorded for run {run_id} in {schema}.{table} "
                              "(not journaled, or already reverted or forgotten)")
        later = await _later_writer(conn, state_schema, run_id, key, markers[0]["id"])
        if later is not None and not force:
            raise RevertError(f"run {later} changed {schema}.{table} after run {run_id}: "
                              "revert that run first (or force)")
        kinds: dict[str, Any] = {r["kind"]: json.loads(r["detail"]) if r["detail"] else {}
                                 for r in markers}
        if "C" in kinds:
            if await conn.fetchval("SELECT to_regclass($1)", target) is not None:
                await conn.execute(f"DROP TABLE {target}")
                report.tables_restored += 1
        else:
            if "S" in kinds:
                prev = qualified(schema, kinds["S"]["prev"])
                if await conn.fetchval("SELECT to_regclass($1)", prev) is None:
                    raise RevertError(f"the table {schema}.{table} replaced was not kept "
                                      "(forgotten after its retention)")
                await conn.execute(f"DROP TABLE IF EXISTS {target}")
                await conn.execute(f"ALTER TABLE {prev} RENAME TO {quote_ident(table)}")
                report.tables_restored += 1
            detail = kinds.get("T") or {}
            await _apply(conn, state_schema, run_id, schema, table, detail, report)
            now = await _columns(conn, schema, table)
            for c in [c for c in (now[0] if now else []) if c not in detail.get("columns", [])]:
                await conn.execute(f"ALTER TABLE {target} DROP COLUMN {quote_ident(c)}")
                report.columns_dropped.append(c)
        if rewind is not None:
            state = qualified(state_schema, state_table)
            if rewind.checkpoint is None:
                await conn.execute(f"DELETE FROM {state} WHERE pipeline = $1", rewind.pipeline)
            else:
                await write_checkpoint(conn, state_schema, state_table, rewind.pipeline,
                                       rewind.checkpoint)
            report.checkpoint_rewound = True
        await _drop_records(conn, state_schema, [run_id], schema, table, keep_tables=True)
    return report


async def _later_writer(conn: asyncpg.Connection, state_schema: str, run_id: str, target: str,
                        first_marker: int) -> str | None:
    j, m = qualified(state_schema, JOURNAL), qualified(state_schema, MARKERS)
    found = await conn.fetchval(
        f"SELECT run_id FROM {m} mk WHERE tbl = $1 AND id > $2 AND run_id <> $3 AND "
        f"(kind IN ('S', 'C') OR EXISTS (SELECT 1 FROM {j} WHERE run_id = mk.run_id AND "
        "tbl = $1)) LIMIT 1", target, first_marker, run_id)
    if found is None:
        found = await conn.fetchval(
            f"SELECT run_id FROM {j} WHERE tbl = $1 AND run_id <> $2 AND seq > "
            f"(SELECT min(seq) FROM {j} WHERE run_id = $2 AND tbl = $1) LIMIT 1", target, run_id)
    return None if found is None else str(found)


async def _apply(conn: asyncpg.Connection, state_schema: str, run_id: str, schema: str,
                 table: str, detail: dict[str, Any], report: RevertReport) -> None:
    """Apply the run's records newest first, one statement per group of the same kind."""
    j, target, tbl = qualified(state_schema, JOURNAL), qualified(schema, table), f"{schema}.{table}"
    groups = await conn.fetch(
        f"SELECT op, min(seq) AS lo, max(seq) AS hi FROM (SELECT op, seq, seq - row_number() "
        f"OVER (PARTITION BY op ORDER BY seq) AS g FROM {j} WHERE run_id = $1 AND tbl = $2) x "
        "GROUP BY op, g ORDER BY hi DESC", run_id, tbl)
    now = await _columns(conn, schema, table)
    live = set(now[0]) if now else set()
    cols = [c for c in detail.get("columns", []) if c in live]
    key = [c for c in detail.get("key", []) if c in live]
    extra = sorted(live - set(cols))
    rows = (f"FROM {j} jr CROSS JOIN LATERAL jsonb_populate_record(NULL::{target}, jr.img) r "
            "WHERE jr.run_id = $1 AND jr.tbl = $2 AND jr.seq BETWEEN $3 AND $4")
    qk = ", ".join(quote_ident(c) for c in key)
    rk = ", ".join(f"r.{quote_ident(c)}" for c in key)
    for g in groups:
        args = (run_id, tbl, g["lo"], g["hi"])
        if g["op"] == "I" and key:
            done = await conn.execute(
                f"DELETE FROM {target} WHERE ({qk}) IN (SELECT {rk} {rows})", *args)
            report.rows_deleted += int(done.split()[-1])
        elif g["op"] == "I":
            done = await conn.execute(
                f"WITH ins AS (SELECT jr.img - $5::text[] AS img, count(*) AS n FROM {j} jr "
                "WHERE jr.run_id = $1 AND jr.tbl = $2 AND jr.seq BETWEEN $3 AND $4 GROUP BY 1), "
                f"cand AS (SELECT t.ctid AS tid, to_jsonb(t) - $5::text[] AS img, row_number() "
                f"OVER (PARTITION BY to_jsonb(t) - $5::text[]) AS rn FROM {target} t) "
                f"DELETE FROM {target} x USING cand JOIN ins USING (img) "
                "WHERE x.ctid = cand.tid AND cand.rn <= ins.n", *args, extra)
            report.rows_deleted += int(done.split()[-1])
        elif g["op"] == "U":
            if not key:
                raise RevertError(f"{schema}.{table} has no primary key: updates of run "
                                  f"{run_id} cannot be matched to rows")
            sets = [c for c in cols if c not in key]
            if sets:
                names = ", ".join(quote_ident(c) for c in sets)
                vals = ", ".join(f"r.{quote_ident(c)}" for c in sets)
                on = " AND ".join(f"t.{quote_ident(c)} = r.{quote_ident(c)}" for c in key)
                done = await conn.execute(
                    f"UPDATE {target} t SET ({names}) = ROW({vals}) FROM (SELECT DISTINCT ON "
                    f"({rk}) r.* {rows} ORDER BY {rk}, jr.seq) r WHERE {on}", *args)
                report.rows_restored += int(done.split()[-1])
        else:
            names = ", ".join(quote_ident(c) for c in cols)
            vals = ", ".join(f"r.{quote_ident(c)}" for c in cols)
            done = await conn.execute(f"INSERT INTO {target} ({names}) OVERRIDING SYSTEM VALUE "
                                      f"SELECT {vals} {rows} ORDER BY jr.seq", *args)
            report.rows_restored += int(done.split()[-1])


async def _drop_records(conn: asyncpg.Connection, state_schema: str, run_ids: Sequence[str],
                        schema: str, table: str, keep_tables: bool) -> int:
    j, m = qualified(state_schema, JOURNAL), qualified(state_schema, MARKERS)
    target = f"{schema}.{table}"
    dropped = 0
    if not keep_tables:
        for (detail,) in await conn.fetch(f"SELECT detail::text FROM {m} WHERE tbl = $1 AND "
                                          "kind = 'S' AND run_id = ANY($2)", target,
                                          list(run_ids)):
            prev = qualified(schema, json.loads(detail)["prev"])
            await conn.execute(f"DROP TABLE IF EXISTS {prev}")
            dropped += 1
    done = await conn.execute(f"DELETE FROM {j} WHERE tbl = $1 AND run_id = ANY($2)", target,
                              list(run_ids))
    await conn.execute(f"DELETE FROM {m} WHERE tbl = $1 AND run_id = ANY($2)", target,
                       list(run_ids))
    return dropped + int(done.split()[-1])


class PgJournaled(Journaled):
    """The :class:`~etlsync.core.revert.Reversible` side of ``PostgresSink`` (a mixin: the
    sink calls :func:`start` when it opens and :func:`retire` instead of dropping the table an
    overwrite replaces)."""

    config: PgConnectionConfig
    schema: str
    table: str
    state_schema: str
    state_table: str
    async def revert(self, run_id: str, rewind: Rewind | None = None,
                     *, force: bool = False) -> RevertReport:
        conn = await self.config.connect()
        try:
            return await revert(conn, run_id, self.schema, self.table, self.state_schema,
                                rewind, self.state_table, force)
        finally:
            await conn.close()

    async def forget(self, run_ids: Sequence[str]) -> int:
        if not run_ids:
            return 0
        conn = await self.config.connect()
        try:
            if await conn.fetchval("SELECT to_regclass($1)",
                                   qualified(self.state_schema, MARKERS)) is None:
                return 0
            async with conn.transaction():
                return await _drop_records(conn, self.state_schema, run_ids, self.schema,
                                           self.table, keep_tables=False)
        finally:
            await conn.close()
