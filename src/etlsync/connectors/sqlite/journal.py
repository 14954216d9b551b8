"""What one run changed in a SQLite table, recorded so the run can be reverted.

While a sink journals a run (:meth:`SqliteJournaled.journal`), temporary triggers on its
connection record every change to the target table in ``_etlsync_undo_<table>`` (a row per
change: the operation, the rowid, the prior values of every column the table had when the
run began), **inside the sink's own transactions**: a batch that commits has its record, one
that rolls back has none. Markers in ``_etlsync_journal_runs`` say what the run found (the
table's columns, or that the table did not exist) and the table an overwrite replaced (kept,
renamed, until :meth:`SqliteJournaled.forget`). :meth:`SqliteJournaled.revert` applies the
records newest first in one transaction, optionally with the checkpoint from before the run.

Only rowid tables are journaled (the sink creates those); ``WITHOUT ROWID`` tables are refused.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import zlib
from collections.abc import Sequence
from typing import Any

from etlsync.connectors.sqlite.checkpoint import connect, quote, write_state
from etlsync.core.errors import ConfigError
from etlsync.core.revert import Journaled, RevertError, RevertReport, Rewind
from etlsync.core.serial import SerialThread

MARKERS = "_etlsync_journal_runs"
_META = ("_etlsync_seq", "_etlsync_run", "_etlsync_op", "_etlsync_old_rowid", "_etlsync_new_rowid")


def undo_table(table: str) -> str:
    return f"_etlsync_undo_{table}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _columns(conn: sqlite3.Connection, table: str) -> list[str] | None:
    info = conn.execute(f"PRAGMA table_info({quote(table)})").fetchall()
    return [r[1] for r in info] if info else None


def _ensure_tables(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(MARKERS)} (id INTEGER PRIMARY KEY "
                 "AUTOINCREMENT, run_id TEXT NOT NULL, tbl TEXT NOT NULL, kind TEXT NOT NULL, "
                 "detail TEXT, at REAL NOT NULL)")
    undo = undo_table(table)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(undo)} ({_META[0]} INTEGER PRIMARY KEY "
                 f"AUTOINCREMENT, {_META[1]} TEXT NOT NULL, {_META[2]} TEXT NOT NULL, "
                 f"{_META[3]} INTEGER, {_META[4]} INTEGER)")
    have = set(_columns(conn, undo) or ())
    for c in columns:
        if c not in have:
            conn.execute(f"ALTER TABLE {quote(undo)} ADD COLUMN {quote(c)}")


def start(conn: sqlite3.Connection, run_id: str, table: str) -> None:
    """Begin recording ``run_id``'s changes to ``table`` on this connection (call after
    connecting, before the first write)."""
    columns = _columns(conn, table)
    conn.execute("BEGIN IMMEDIATE")
    try:
        _ensure_tables(conn, table, columns or ())
        if columns is None:
            _mark(conn, run_id, table, "C", None)
        else:
            try:
                conn.execute(f"SELECT rowid FROM {quote(table)} LIMIT 0")
            except sqlite3.OperationalError:
                raise ConfigError(f"SqliteSink: table {table!r} has no rowid (WITHOUT ROWID): "
                                  "its runs cannot be journaled for rollback; turn the job's "
                                  "journal off") from None
            _mark(conn, run_id, table, "T", {"columns": columns})
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if columns is not None:
        _install_triggers(conn, run_id, table, columns)


def _mark(conn: sqlite3.Connection, run_id: str, table: str, kind: str,
          detail: dict[str, Any] | None) -> None:
    conn.execute(f"INSERT INTO {quote(MARKERS)} (run_id, tbl, kind, detail, at) "
                 "VALUES (?, ?, ?, ?, ?)",
                 (run_id, table, kind, None if detail is None else json.dumps(detail), time.time()))


def _trigger_names(table: str) -> list[str]:
    return [f"_etlsync_journal_{op}_{table}" for op in "iud"]


def _install_triggers(conn: sqlite3.Connection, run_id: str, table: str,
                      columns: Sequence[str]) -> None:
    undo, run, target = quote(undo_table(table)), _literal(run_id), f"main.{quote(table)}"
    names = ", ".join(quote(c) for c in columns)
    old = ", ".join(f"OLD.{quote(c)}" for c in columns)
    meta = f"{_META[1]}, {_META[2]}, {_META[3]}, {_META[4]}"
    ins, upd, dele = (quote(n) for n in _trigger_names(table))
    _drop_triggers(conn, table)
    conn.execute(f"CREATE TEMP TRIGGER {ins} AFTER INSERT ON {target} BEGIN INSERT INTO {undo} "
                 f"({meta}) VALUES ({run}, 'I', NULL, NEW.rowid); END")
    conn.execute(f"CREATE TEMP TRIGGER {upd} AFTER UPDATE ON {target} BEGIN INSERT INTO {undo} "
                 f"({meta}, {names}) VALUES ({run}, 'U', OLD.rowid, NEW.rowid, {old}); END")
    conn.execute(f"CREATE TEMP TRIGGER {dele} AFTER DELETE ON {target} BEGIN INSERT INTO {undo} "
                 f"({meta}, {names}) VALUES ({run}, 'D', OLD.rowid, NULL, {old}); END")


def _drop_triggers(conn: sqlite3.Connection, table: str) -> None:
    for name in _trigger_names(table):
        conn.execute(f"DROP TRIGGER IF EXISTS temp.{quote(name)}")


def retire(conn: sqlite3.Connection, run_id: str | None, table: str) -> None:
    """An overwrite replaces ``table`` (inside the caller's transaction): keep the old table,
    renamed, when journaling ``run_id``; else drop it."""
    if run_id is None or _columns(conn, table) is None:
        conn.execute(f"DROP TABLE IF EXISTS {quote(table)}")
        return
    prev = f"_etlsync_prev_{zlib.crc32(run_id.encode()):08x}_{table}"
    indexes = [(name, sql) for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL", (table,))]
    _drop_triggers(conn, table)
    conn.execute(f"DROP TABLE IF EXISTS {quote(prev)}")
    conn.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote(prev)}")
    for name, _ in indexes:  # the new table gets indexes of these names
        conn.execute(f"DROP INDEX IF EXISTS {quote(name)}")
    _mark(conn, run_id, table, "S", {"prev": prev, "indexes": [sql for _, sql in indexes]})


def _markers(conn: sqlite3.Connection, run_id: str, table: str) -> list[tuple[int, str, Any]]:
    try:
        rows = conn.execute(f"SELECT id, kind, detail FROM {quote(MARKERS)} WHERE run_id = ? "
                            "AND tbl = ? ORDER BY id", (run_id, table)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    return [(i, k, None if d is None else json.loads(d)) for i, k, d in rows]


def _later_writer(conn: sqlite3.Connection, run_id: str, table: str, first_marker: int
                  ) -> str | None:
    """Another run that changed ``table`` after ``run_id`` began (or while it ran), if any."""
    undo = quote(undo_table(table))
    row = conn.execute(
        f"SELECT run_id FROM {quote(MARKERS)} m WHERE tbl = ? AND id > ? AND run_id <> ? AND "
        f"(kind IN ('S', 'C') OR EXISTS (SELECT 1 FROM {undo} WHERE {_META[1]} = m.run_id)) "
        "LIMIT 1", (table, first_marker, run_id)).fetchone()
    if row is None:
        row = conn.execute(
            f"SELECT {_META[1]} FROM {undo} WHERE {_META[1]} <> ? AND {_META[0]} > "
            f"(SELECT min({_META[0]}) FROM {undo} WHERE {_META[1]} = ?) LIMIT 1",
            (run_id, run_id)).fetchone()
    return None if row is None else str(row[0])


def revert(conn: sqlite3.Connection, run_id: str, table: str, rewind: Rewind | None,
           state_table: str, force: bool) -> RevertReport:
    """Undo ``run_id``'s recorded changes to ``table`` in one transaction."""
    report = RevertReport(target=f"sqlite table {table!r}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        markers = _markers(conn, run_id, table)
        if not markers:
            raise RevertError(f"nothing was recorded for run {run_id} in table {table!r} "
                              "(not journaled, or already reverted or forgotten)")
        later = _later_writer(conn, run_id, table, markers[0][0])
        if later is not None and not force:
            raise RevertError(f"run {later} changed table {table!r} after run {run_id}: "
                              "revert that run first (or force)")
        kinds = {k: d for _, k, d in markers}
        if "C" in kinds:
            if _columns(conn, table) is not None:
                conn.execute(f"DROP TABLE {quote(table)}")
                report.tables_restored += 1
        else:
            if "S" in kinds:
                _swap_back(conn, table, kinds["S"])
                report.tables_restored += 1
            before = list(kinds.get("T", {}).get("columns", []))
            _apply_undo(conn, run_id, table, before, report)
            for c in [c for c in _columns(conn, table) or () if before and c not in before]:
                conn.execute(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(c)}")
                report.columns_dropped.append(c)
        if rewind is not None:
            if rewind.checkpoint is None:
                conn.execute(f"DELETE FROM {quote(state_table)} WHERE pipeline = ?",
                             (rewind.pipeline,))
            else:
                write_state(conn, rewind.pipeline, rewind.checkpoint, state_table)
            report.checkpoint_rewound = True
        _drop_records(conn, [run_id], table, keep_tables=True)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return report


def _swap_back(conn: sqlite3.Connection, table: str, detail: dict[str, Any]) -> None:
    prev = detail["prev"]
    if _columns(conn, prev) is None:
        raise RevertError(f"the table {table!r} replaced was not kept ({prev!r} is gone: "
                          "forgotten after its retention)")
    conn.execute(f"DROP TABLE IF EXISTS {quote(table)}")
    conn.execute(f"ALTER TABLE {quote(prev)} RENAME TO {quote(table)}")
    for sql in detail.get("indexes", []):
        conn.execute(sql)


def _apply_undo(conn: sqlite3.Connection, run_id: str, table: str, before: list[str],
                report: RevertReport) -> None:
    undo = quote(undo_table(table))
    cols = [c for c in before if c in set(_columns(conn, table) or ())]
    picked = ", ".join(quote(c) for c in cols)
    rows = conn.execute(
        f"SELECT {_META[2]}, {_META[3]}, {_META[4]}{', ' + picked if cols else ''} FROM {undo} "
        f"WHERE {_META[1]} = ? ORDER BY {_META[0]} DESC", (run_id,)).fetchall()
    t = quote(table)
    names = ", ".join(["rowid", *(quote(c) for c in cols)])
    marks = ", ".join("?" * (len(cols) + 1))
    sets = ", ".join(["rowid = ?", *(f"{quote(c)} = ?" for c in cols)])
    i = 0
    while i < len(rows):
        op, j = rows[i][0], i
        while j < len(rows) and rows[j][0] == op:
            j += 1
        group = rows[i:j]
        if op == "I":
            conn.executemany(f"DELETE FROM {t} WHERE rowid = ?", [(r[2],) for r in group])
            report.rows_deleted += len(group)
        elif op == "U":
            conn.executemany(f"UPDATE {t} SET {sets} WHERE rowid = ?",
                             [(r[1], *r[3:], r[2]) for r in group])
            report.rows_restored += len(group)
        else:
            conn.executemany(f"INSERT INTO {t} ({names}) VALUES ({marks})",
                             [(r[1], *r[3:]) for r in group])
            report.rows_restored += len(group)
        i = j


def _drop_records(conn: sqlite3.Connection, run_ids: Sequence[str], table: str,
                  keep_tables: bool) -> int:
    dropped = 0
    marks = ", ".join("?" * len(run_ids))
    if not keep_tables:
        for (detail,) in conn.execute(f"SELECT detail FROM {quote(MARKERS)} WHERE tbl = ? AND "
                                      f"kind = 'S' AND run_id IN ({marks})",
                                      (table, *run_ids)).fetchall():
            conn.execute(f"DROP TABLE IF EXISTS {quote(json.loads(detail)['prev'])}")
            dropped += 1
    if _columns(conn, undo_table(table)) is not None:
        dropped += conn.execute(f"DELETE FROM {quote(undo_table(table))} WHERE {_META[1]} IN "
                                f"({marks})", tuple(run_ids)).rowcount
    conn.execute(f"DELETE FROM {quote(MARKERS)} WHERE tbl = ? AND run_id IN ({marks})",
                 (table, *run_ids))
    return dropped


class SqliteJournaled(Journaled):
    """The :class:`~etlsync.core.revert.Reversible` side of ``SqliteSink`` (a mixin: the
    sink calls :func:`start` when it opens and :func:`retire` instead of dropping a table it
    replaces)."""

    path: str
    table: str
    state_table: str
    timeout: float
    synchronous: str
    async def revert(self, run_id: str, rewind: Rewind | None = None,
                     *, force: bool = False) -> RevertReport:
        report: RevertReport = await self._offline(
            lambda c: revert(c, run_id, self.table, rewind, self.state_table, force))
        return report

    async def forget(self, run_ids: Sequence[str]) -> int:
        if not run_ids:
            return 0

        def run(conn: sqlite3.Connection) -> int:
            if not _markers_table(conn):
                return 0
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = _drop_records(conn, list(run_ids), self.table, keep_tables=False)
                conn.execute("COMMIT")
                return n
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        dropped: int = await self._offline(run)
        return dropped

    async def _offline(self, fn: Any) -> Any:
        serial = SerialThread("etlsync-sqlite-journal")

        def run() -> Any:
            if not os.path.exists(self.path):
                raise RevertError(f"{self.path} does not exist: nothing to revert or forget")
            conn = connect(self.path, timeout=self.timeout, synchronous=self.synchronous)
            try:
                return fn(conn)
            finally:
                conn.close()
        try:
            return await serial.run(run)
        finally:
            serial.shutdown()


def _markers_table(conn: sqlite3.Connection) -> bool:
    return _columns(conn, MARKERS) is not None
