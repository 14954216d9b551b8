"""The SQL decoding interface gives the changes the streaming protocol gives (the
``decode_etlsync_sql`` experiment of benchmarks/postgres_cdc.py): a slot's backlog read
through ``pg_logical_slot_get_binary_changes`` on a temporary copy of the slot, each message
framed as a fake XLogData payload of a CopyData message, decodes by ``decode_chunk`` to
exactly the events the replication connection yields from the slot itself, and the slot is
left where it was."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from etlsync.connectors.postgres.replication.conninfo import parse_dsn
from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder, Relation
from etlsync.connectors.postgres.replication.protocol import ReplicationConnection, copydata
from tests.postgres_cdc.conftest import Names

pytestmark = pytest.mark.integration

HEADER = b"w" + bytes(24)  # decode_chunk reads the pgoutput message from byte 25


def _shape(rel: Relation) -> tuple[Any, ...]:
    return rel.oid, rel.namespace, rel.name, rel.replica_identity, rel.columns


def _rel(x: Any) -> Any:
    """Relations (alone or in a Truncate's list) by (oid, name)."""
    if isinstance(x, Relation):
        return x.oid, x.name
    if isinstance(x, list) and x and isinstance(x[0], Relation):
        return [(r.oid, r.name) for r in x]
    return x


def _norm(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Changes one per record (runs of inserts may be cut at other places), relations by
    (oid, name), keepalives dropped (the SQL interface has none), and a Relation message
    only where it differs from the last one of its oid (each SQL call is a new decoding
    session, so pgoutput sends the Relation again before the call's first change of it)."""
    out: list[tuple[Any, ...]] = []
    relations: dict[int, Relation] = {}
    for ev in events:
        if ev[0] == "k":
            continue
        if ev[0] == "R":
            rel, last = ev[1], relations.get(ev[1].oid)
            if last is not None and _shape(last) == _shape(rel):
                continue
            relations[rel.oid] = rel
        items = tuple(_rel(x) for x in ev)
        if ev[0] == "I*":
            out.extend(("I", items[1], record) for record in ev[2])
        else:
            out.append(items)
    return out


def _decode(decoder: PgOutputDecoder, msgs: list[bytes]) -> list[tuple[Any, ...]]:
    """``msgs`` (CopyData payloads) decoded as the stream would carry them."""
    events: list[tuple[Any, ...]] = []
    data, i = copydata(msgs), 0
    while i < len(data):
        got, i = decoder.decode_chunk(data, i)
        events.extend(got)
    return events


async def _streamed(dsn: str, names: Names, commits: int) -> list[tuple[Any, ...]]:
    conn = await ReplicationConnection(parse_dsn(dsn), {"application_name": "sql_decoding"}
                                       ).connect()
    decoder = PgOutputDecoder()
    events: list[tuple[Any, ...]] = []
    try:
        await conn.start_replication(names.slot, 0, {"proto_version": "1",
                                                     "publication_names": names.publication})
        while sum(ev[0] == "C" for ev in events) < commits:
            events.extend(await asyncio.wait_for(conn.read_decoded(decoder.decode_chunk), 20))
    finally:
        conn.abort()
    return _norm(events)


async def _via_sql(pg: asyncpg.Connection, names: Names, per_call: int
                   ) -> tuple[list[tuple[Any, ...]], int]:
    tmp = f"{names.slot}_tmp"
    await pg.execute("SELECT pg_copy_logical_replication_slot($1, $2, true)", names.slot, tmp)
    decoder, calls = PgOutputDecoder(), 0
    events: list[tuple[Any, ...]] = []
    try:
        while True:
            rows = await pg.fetch(
                "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, $2, "
                "'proto_version', '1', 'publication_names', $3)", tmp, per_call,
                names.publication)
            calls += 1
            events.extend(_decode(decoder, [HEADER + r["data"] for r in rows]))
            if len(rows) < per_call:
                break
    finally:
        await pg.execute("SELECT pg_drop_replication_slot($1)", tmp)
    return _norm(events), calls


async def test_sql_interface_decodes_what_the_stream_does(pg: asyncpg.Connection, pg_dsn: str,
                                                          names: Names) -> None:
    t = names.table
    await pg.execute(f'CREATE TABLE "{t}" (id int PRIMARY KEY, v text, n numeric(12,2), '
                     "ts timestamptz, f double precision)")
    await pg.execute(f'CREATE PUBLICATION "{names.publication}" FOR TABLE "{t}"')
    await pg.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", names.slot)
    row = "SELECT g, 'row ' || g, g * 1.25, now(), g / 7.0 FROM generate_series({}, {}) g"
    statements = [
        f'INSERT INTO "{t}" ' + row.format(1, 700),  # one transaction longer than a call
        *(f'INSERT INTO "{t}" ' + row.format(1000 + 10 * k, 1009 + 10 * k) for k in range(30)),
        f"UPDATE \"{t}\" SET v = 'changed', n = NULL WHERE id % 50 = 0",
        f'UPDATE "{t}" SET id = id + 100000 WHERE id BETWEEN 1 AND 3',  # key change
        f'DELETE FROM "{t}" WHERE id % 70 = 0',
        f"INSERT INTO \"{t}\" VALUES (-1, NULL, 'NaN', 'infinity', 'Infinity')",
        f'TRUNCATE "{t}"',
    ]
    for sql in statements:
        await pg.execute(sql)
    before = await pg.fetchrow("SELECT restart_lsn, confirmed_flush_lsn FROM "
                               "pg_replication_slots WHERE slot_name = $1", names.slot)

    via_sql, calls = await _via_sql(pg, names, per_call=97)
    after = await pg.fetchrow("SELECT restart_lsn, confirmed_flush_lsn FROM "
                              "pg_replication_slots WHERE slot_name = $1", names.slot)
    assert after == before  # the copy advanced, the slot did not
    streamed = await _streamed(pg_dsn, names, commits=len(statements))

    assert calls > 5
    changes = sum(ev[0] in ("I", "U", "D", "T") for ev in streamed)
    assert changes == 700 + 300 + 20 + 3 + 14 + 1 + 1, changes
    assert [repr(ev) for ev in via_sql] == [repr(ev) for ev in streamed]  # NaN != NaN
