"""Server readiness checks, publication and slot management, and catalog look-ups (asyncpg)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import asyncpg

from etlsync.connectors.postgres.replication.protocol import (
    ReplicationConnection,
    parse_lsn,
    qualified,
    quote_ident,
)
from etlsync.connectors.postgres.replication.types import Catalog
from etlsync.core.errors import ConfigError, ServiceNotReady


@dataclass(slots=True)
class SlotInfo:
    """A replication slot as ``pg_replication_slots`` shows it."""

    name: str
    plugin: str
    database: str
    confirmed_flush_lsn: int | None
    restart_lsn: int | None
    active: bool


async def check_ready(conn: asyncpg.Connection) -> None:
    """Fail with the setting and the fix when the server cannot do logical replication.

    :raises ServiceNotReady: for ``wal_level``, ``max_replication_slots``, ``max_wal_senders``.
    """
    wal_level = await conn.fetchval("SHOW wal_level")
    if wal_level != "logical":
        raise ServiceNotReady(
            f"PostgreSQL wal_level is {wal_level!r}; logical replication needs 'logical': run "
            "ALTER SYSTEM SET wal_level = 'logical' and restart the server")
    max_slots = int(await conn.fetchval("SHOW max_replication_slots"))
    used = await conn.fetchval("SELECT count(*) FROM pg_replication_slots")
    if max_slots == 0 or used >= max_slots:
        raise ServiceNotReady(
            f"PostgreSQL max_replication_slots = {max_slots} and {used} slot(s) exist: raise it "
            "(ALTER SYSTEM SET max_replication_slots = ...; restart) or drop unused slots")
    senders = int(await conn.fetchval("SHOW max_wal_senders"))
    if senders == 0:
        raise ServiceNotReady("PostgreSQL max_wal_senders = 0: set it to at least 1 and restart")


async def slot_info(conn: asyncpg.Connection, slot: str) -> SlotInfo | None:
    """The slot named ``slot``, or ``None``."""
    row = await conn.fetchrow(
        "SELECT slot_name, plugin, database, confirmed_flush_lsn::text AS c, "
        "restart_lsn::text AS r, active FROM pg_replication_slots WHERE slot_name = $1", slot)
    if row is None:
        return None
    return SlotInfo(row["slot_name"], row["plugin"] or "", row["database"] or "",
                    parse_lsn(row["c"]) if row["c"] else None,
                    parse_lsn(row["r"]) if row["r"] else None, bool(row["active"]))


async def create_slot(rconn: ReplicationConnection, slot: str,
                      export_snapshot: bool) -> tuple[int, str | None]:
    """Create a ``pgoutput`` slot on the replication connection.

    :returns: ``(consistent_point, snapshot_name)``; the snapshot (when exported) stays
        valid until the next command on ``rconn``.
    """
    mode = "EXPORT_SNAPSHOT" if export_snapshot else "NOEXPORT_SNAPSHOT"
    rows = await rconn.query(f"CREATE_REPLICATION_SLOT {quote_ident(slot)} LOGICAL pgoutput {mode}")
    _name, point, snapshot, _plugin = rows[0]
    return parse_lsn(str(point)), snapshot


async def drop_slot(conn: asyncpg.Connection, slot: str) -> bool:
    """Drop ``slot`` if it exists (waiting for an active one to be released)."""
    if await slot_info(conn, slot) is None:
        return False
    await conn.execute("SELECT pg_drop_replication_slot($1)", slot)
    return True


async def ensure_publication(conn: asyncpg.Connection, publication: str,
                             tables: list[str] | None, create: bool, *,
                             slot: str | None = None, log: Any = None) -> list[str]:
    """Create the publication when absent (``create``), add missing tables when present.

    :param tables: ``schema.table`` names; ``None`` means every table (``FOR ALL TABLES``).
    :param slot: the existing slot that will read it, if there is one: a publication
        created after its slot is invisible to the changes the slot still holds, so a
        missing one is then an error, never created.
    :param log: where to warn when the new publication's tables are already published
        under other names (a mistyped name makes a second publication).
    :returns: the published tables as ``schema.table``, sorted.
    :raises ConfigError: when it is absent and ``create`` is false or ``slot`` is given.
    """
    exists = await conn.fetchval("SELECT count(*) FROM pg_publication WHERE pubname = $1",
                                 publication)
    names = [_split(t) for t in tables or []]
    if not exists:
        others = [r[0] for r in await conn.fetch("SELECT pubname FROM pg_publication "
                                                 "ORDER BY 1")]
        if slot is not None:
            raise ConfigError(
                f"publication {publication!r} does not exist and slot {slot!r} does: a "
                "publication created now would be invisible to the changes the slot still "
                "has to read (pgoutput reads publications as of each change), so etlsync "
                f"does not create it. Publications on this database: {others}. Fix: "
                "correct the publication name; or create the publication, drop the slot "
                f"(SELECT pg_drop_replication_slot('{slot}')) and delete this pipeline's "
                "checkpoint, so a new slot and snapshot are taken")
        if not create:
            raise ConfigError(f"publication {publication!r} does not exist; create it "
                              "(CREATE PUBLICATION ... FOR TABLE ...) or pass "
                              f"create_publication=True (publications here: {others})")
        target = ("FOR TABLE " + ", ".join(qualified(n) for n in names)) if names else (
            "FOR ALL TABLES")
        with contextlib.suppress(asyncpg.DuplicateObjectError):
            await conn.execute(f"CREATE PUBLICATION {quote_ident(publication)} {target}")
        await _warn_if_published(conn, publication, names, log)
    elif names:
        present = set(await published_tables(conn, publication))
        missing = [n for n in names if f"{n[0]}.{n[1]}" not in present]
        if missing and create:
            await conn.execute(f"ALTER PUBLICATION {quote_ident(publication)} ADD TABLE "
                               + ", ".join(qualified(n) for n in missing))
        elif missing:
            raise ConfigError(f"publication {publication!r} lacks tables "
                              f"{['.'.join(n) for n in missing]}")
    return await published_tables(conn, publication)


async def _warn_if_published(conn: asyncpg.Connection, publication: str,
                             names: list[tuple[str, str]], log: Any) -> None:
    """Warn that ``publication`` was just created for tables other publications publish."""
    if log is None:
        return
    if names:
        rows = await conn.fetch(
            "SELECT DISTINCT pubname FROM pg_publication_tables WHERE pubname <> $1 AND "
            "(schemaname, tablename) IN (SELECT * FROM unnest($2::text[], $3::text[])) "
            "ORDER BY 1", publication, [n[0] for n in names], [n[1] for n in names])
    else:
        rows = await conn.fetch("SELECT pubname FROM pg_publication WHERE puballtables "
                                "AND pubname <> $1 ORDER BY 1", publication)
    if rows:
        log.warning("created a new publication for tables that other publications already "
                    "publish: if its name is mistyped, drop it (DROP PUBLICATION) and the "
                    "new slot, and use the existing one", publication=publication,
                    already_published_by=[r[0] for r in rows])


async def published_tables(conn: asyncpg.Connection, publication: str) -> list[str]:
    rows = await conn.fetch("SELECT schemaname, tablename FROM pg_publication_tables "
                            "WHERE pubname = $1 ORDER BY 1, 2", publication)
    return [f"{r['schemaname']}.{r['tablename']}" for r in rows]


def _split(table: str) -> tuple[str, str]:
    schema, dot, name = table.partition(".")
    return (schema, name) if dot else ("public", table)


def split_table(table: str) -> tuple[str, str]:
    """``(schema, table)`` of ``schema.table`` (default schema ``public``)."""
    return _split(table)


async def type_catalog(conn: asyncpg.Connection, oids: list[int]) -> Catalog:
    """:data:`~etlsync.connectors.postgres.replication.types.TypeEntry` by oid for
    ``oids`` and the types they are built on (array elements, domains' base types)."""
    rows = await conn.fetch(
        "SELECT oid, format_type(oid, NULL) AS name, typtype::text AS typtype, "
        "CASE WHEN typtype = 'd' THEN typbasetype WHEN typcategory = 'A' THEN typelem "
        "ELSE 0 END AS elem, typdelim::text AS delim FROM pg_type "
        "WHERE oid = ANY($1::oid[])", oids)
    out = {int(r["oid"]): (r["name"], r["typtype"], int(r["elem"]), r["delim"])
           for r in rows}
    more = [e for _, _, e, _ in out.values() if e and e not in out and e not in oids]
    if more:
        out.update(await type_catalog(conn, more))
    return out


async def primary_key(conn: asyncpg.Connection, relid: int) -> tuple[str, ...]:
    """The primary key columns of the relation ``relid``, in key order."""
    rows = await conn.fetch(
        "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) "
        "WITH ORDINALITY AS k(attnum, ord) JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = k.attnum WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord", relid)
    return tuple(r["attname"] for r in rows)


async def table_columns(conn: asyncpg.Connection, table: str) -> tuple[int, list[tuple[str, int]]]:
    """``(relid, [(column, type oid), ...])`` of ``schema.table``, without generated
    columns (pgoutput does not send them: the snapshot leaves them out too)."""
    schema, name = _split(table)
    relid = await conn.fetchval(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2", schema, name)
    if relid is None:
        raise ConfigError(f"table {table!r} does not exist")
    rows = await conn.fetch("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = $1 "
                            "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' "
                            "ORDER BY attnum", relid)
    return int(relid), [(r["attname"], int(r["atttypid"])) for r in rows]


async def published_shape(conn: asyncpg.Connection, publication: str | None,
                          table: str) -> tuple[list[str] | None, str | None]:
    """The column list and row filter with which ``publication`` publishes ``table``
    (PostgreSQL 15+): ``(None, None)`` for every column and every row."""
    if publication is None or int(await conn.fetchval("SHOW server_version_num")) < 150000:
        return None, None
    schema, name = _split(table)
    row = await conn.fetchrow("SELECT attnames, rowfilter FROM pg_publication_tables "
                              "WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
                              publication, schema, name)
    if row is None:
        return None, None
    return (list(row["attnames"]) if row["attnames"] is not None else None), row["rowfilter"]


async def wal_retained(conn: asyncpg.Connection, slot: str) -> int:
    """Bytes of WAL the slot keeps (current WAL position minus its restart_lsn)."""
    value: Any = await conn.fetchval(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
        "FROM pg_replication_slots WHERE slot_name = $1", slot)
    return int(value or 0)
