"""Regression tests of issue 15 (PostgreSQL): every CDC value equals the server's own (see
tests/postgres_cdc/reference.py), on the stream and in the snapshot alike."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from etlsync.connectors.postgres.cdc import PostgresCdcSource
from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder
from etlsync.connectors.postgres.replication.protocol import copydata, quote_ident
from etlsync.connectors.postgres.replication.slots import type_catalog
from etlsync.core.batch import Batch, Op
from etlsync.core.errors import ConfigError, DataError
from tests.postgres_cdc import reference
from tests.postgres_cdc.conftest import Names, take, wait_streaming

pytestmark = pytest.mark.integration


def _source(dsn: str, names: Names, **kw: Any) -> PostgresCdcSource:
    opts: dict[str, Any] = {"tables": [names.table], "status_interval": 0.5, **kw}
    return PostgresCdcSource(dsn, slot=names.slot, publication=names.publication, **opts)


def _changes(batches: list[Batch]) -> list[tuple[Op, dict[str, Any]]]:
    return [(op, row) for b in batches for op, row in b.iter_changes()]


def _rows(batches: list[Batch]) -> int:
    return sum(len(b) for b in batches)


async def _types(pg: asyncpg.Connection, names: Names, *ddl: str) -> None:
    for statement in ddl:
        await pg.execute(statement)
        words = statement.split()
        names.types.append((words[1], words[2]))


async def _streaming(pg: asyncpg.Connection, slot: str, task: asyncio.Future[Any]) -> None:
    """Wait until a reader streams from ``slot``, or its task failed (raise its error)."""
    waiting = asyncio.ensure_future(wait_streaming(pg, slot))
    await asyncio.wait([waiting, task], return_when=asyncio.FIRST_COMPLETED)
    if task.done() and not waiting.done():
        waiting.cancel()
        task.result()
    await waiting


def _assert_rows_equal(rows: list[dict[str, Any]], want: dict[Any, dict[str, Any]]) -> None:
    assert rows, "no rows"
    for row in rows:
        assert not reference.differences(row, want[row["id"]]), (
            row["id"], reference.differences(row, want[row["id"]]))


async def test_relation_first_seen_inside_a_v2_stream_block_is_decoded_with_its_types(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """Item 1: a table first seen inside a protocol v2 stream block: no row may be decoded
    before its relation's types (domains, enum arrays) are resolved."""
    t = names.table
    await _types(pg, names, f"CREATE TYPE {t}_mood AS ENUM ('happy', 'NULL', 'sad')",
                 f"CREATE DOMAIN {t}_int AS int", f"CREATE DOMAIN {t}_iv AS interval")
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, d {t}_int, e {t}_mood[], "
                     f"iv {t}_iv, da {t}_int[], pad text)")
    # the slot first, the transaction next, the reader last: the walsender then sends the
    # stream block's Relation message and many changes after it in one burst
    await pg.execute(f"CREATE PUBLICATION {names.publication} FOR TABLE {t}")
    await pg.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", names.slot)
    await pg.execute(f"INSERT INTO {t} SELECT g, g % 7, '{{happy,\"NULL\"}}', "
                     "'1 day 2 hours'::interval * (g % 3), ARRAY[g, 2], repeat('p', 100) "
                     "FROM generate_series(1, 1500) g")
    src = _source(pg_dsn, names, snapshot="never",
                  replication_settings={"logical_decoding_work_mem": "64kB"})
    agen = src.read(None)
    task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 1500, timeout=60))
    batches = await task
    await agen.aclose()
    assert src.streamed_transactions >= 1
    want = await reference.fetch_rows(pg_dsn, t)
    rows = [row for _, row in _changes(batches)]
    assert len(rows) == 1500
    _assert_rows_equal(rows, want)


async def test_box_arrays_split_on_the_types_delimiter(pg: asyncpg.Connection, names: Names,
                                                      pg_dsn: str) -> None:
    """Item 2: box arrays (and arrays of a domain over box) use ';' between elements."""
    t = names.table
    await _types(pg, names, f"CREATE DOMAIN {t}_box AS box")
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, bx box[], db {t}_box[], "
                     "bx2 box[])")
    src = _source(pg_dsn, names, snapshot="never")
    agen = src.read(None)
    task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 2))
    await _streaming(pg, names.slot, task)
    await pg.execute(f"INSERT INTO {t} VALUES (1, '{{(1,1),(0,0);(3,4),(2,2)}}', "
                     "'{(1,1),(0,0);(3,4),(2,2);(5,5),(5,5)}', "
                     "'{{(1,1),(0,0);(2,2),(1,1)};{(3,3),(2,2);NULL}}'), "
                     "(2, '{}', '{NULL}', NULL)")
    batches = await task
    await agen.aclose()
    want = await reference.fetch_rows(pg_dsn, t)
    rows = [row for _, row in _changes(batches)]
    assert rows[0]["bx"] == ["(1,1),(0,0)", "(3,4),(2,2)"]
    _assert_rows_equal(rows, want)


async def test_decode_chunk_stops_after_a_relation_inside_a_stream_block(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """Item 1, without timing: a real streamed transaction (the SQL interface's pgoutput
    messages, framed as the walsender frames them) decoded in one chunk: decoding stops
    after the Relation message so its types are resolved before any row is decoded."""
    t = names.table
    await _types(pg, names, f"CREATE DOMAIN {t}_int AS int")
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, d {t}_int, da {t}_int[])")
    await pg.execute(f"CREATE PUBLICATION {names.publication} FOR TABLE {t}")
    await pg.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", names.slot)
    await pg.execute(f"INSERT INTO {t} SELECT g, g, ARRAY[g] FROM generate_series(1, 3000) g")
    await pg.execute("SET logical_decoding_work_mem = '64kB'")
    msgs = [b"w" + bytes(24) + r["data"] for r in await pg.fetch(
        "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, "
        "'proto_version', '2', 'streaming', 'on', 'publication_names', $2)",
        names.slot, names.publication)]
    decoder, data, pos = PgOutputDecoder(), copydata(msgs), 0
    rows: list[dict[str, Any]] = []
    while pos < len(data):
        events, pos = decoder.decode_chunk(data, pos)
        for ev in events:
            if ev[0] == "R":  # what PostgresCdcSource does: resolve, then decode on
                rel = ev[1]
                decoder.catalog.update(await type_catalog(pg, rel.type_oids()))
                rel.build(decoder.catalog)
            elif ev[0] == "X" and ev[2][0] == "I":
                rows.append(ev[2][2])
    assert any(m[25:26] == b"S" for m in msgs)  # it was streamed
    assert len(rows) == 3000
    assert all(r["d"] == r["id"] and r["da"] == [r["id"]] for r in rows), rows[:3]


SNAPSHOT_COLUMNS = """id int PRIMARY KEY, addr inet, net cidr, doc xml, cp {t}_pair,
  di {t}_iv, tz timetz, tza timetz[], g int GENERATED ALWAYS AS (id * 2) STORED"""

SNAPSHOT_ROWS = [
    "(1, '::1', '10.0.0.0/8', '<?xml version=\"1.0\"?><a>x</a>', '(1,\"1 day 02:00:00\")', "
    "'-1 years', '12:00:00+05:30:15', '{12:00:00+05:30:15,\"00:00:00-15:59:59\"}')",
    "(2, '192.168.0.1/24', '::/0', '<b/>', '(,)', '1 mon -2 days 03:00:01.5', "
    "'23:59:59.999999-01', NULL)",
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]


async def test_snapshot_gives_what_the_stream_gives(pg: asyncpg.Connection, names: Names,
                                                    pg_dsn: str) -> None:
    """Item 3: inet, xml, a composite holding an interval, a domain over interval, timetz
    offsets with seconds: the snapshot and the stream both give the server's values; the
    generated column is in neither."""
    t = names.table
    await _types(pg, names, f"CREATE TYPE {t}_pair AS (n int, i interval)",
                 f"CREATE DOMAIN {t}_iv AS interval")
    await pg.execute(f"CREATE TABLE {t} ({SNAPSHOT_COLUMNS.format(t=t)})")
    await pg.execute(f"INSERT INTO {t} VALUES {', '.join(SNAPSHOT_ROWS)}")
    src = _source(pg_dsn, names, snapshot="initial")
    agen = src.read(None)
    snap = await take(agen, lambda g: bool(g) and set(g[-1].position or {}) == {"lsn"})
    await pg.execute(f"UPDATE {t} SET id = id + 10")  # the same values again, streamed
    streamed = await take(agen, lambda g: sum(op is Op.INSERT for op, _ in _changes(g)) >= 3)
    await agen.aclose()
    want = {k - 10: {**v, "id": k - 10}
            for k, v in (await reference.fetch_rows(pg_dsn, t)).items()}
    for w in want.values():
        del w["g"]  # generated columns: neither path delivers them (documented)
    snap_rows = [row for _, row in _changes(snap)]
    assert len(snap_rows) == 3 and all("g" not in r for r in snap_rows)
    _assert_rows_equal(snap_rows, want)
    inserted = [{**row, "id": row["id"] - 10} for op, row in _changes(streamed)
                if op is Op.INSERT]
    assert all("g" not in r for r in inserted)
    _assert_rows_equal(inserted, want)
    schema = snap[0].schema
    assert schema is not None and "g" not in schema


async def test_snapshot_bc_date_raises_data_error_naming_table_column_value(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """Item 3: a date Python cannot hold is a DataError naming table, column and value."""
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, d date, ts timestamptz)")
    await pg.execute(f"INSERT INTO {t} VALUES (1, '2024-01-01', now()), "
                     "(2, '0044-03-15 BC', now())")
    agen = _source(pg_dsn, names, snapshot="initial").read(None)
    with pytest.raises(DataError, match=rf"{t}.*'d'.*0044-03-15 BC"):
        await take(agen, lambda g: _rows(g) >= 2)
    await agen.aclose()


TOAST_COLUMNS = "id int PRIMARY KEY, ivs interval[], pad char(3000), doc xml, n int"


async def _toast_table(pg: asyncpg.Connection, t: str) -> None:
    await pg.execute(f"CREATE TABLE {t} ({TOAST_COLUMNS})")
    for col in ("ivs", "pad", "doc"):
        await pg.execute(f"ALTER TABLE {t} ALTER COLUMN {col} SET STORAGE EXTERNAL")


TOAST_ROW = ("INSERT INTO {t} VALUES (1, (SELECT array_agg(make_interval(days => g, "
             "secs => 0.5)) FROM generate_series(1, 300) g), 'padded', "
             "('<?xml version=\"1.0\"?><r>' || repeat('<x>y</x>', 400) || '</r>')::xml, 1)")


async def test_key_change_fills_unchanged_toast_values_as_the_stream_reads_them(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """Item 4: a key change under REPLICA IDENTITY DEFAULT: the unchanged TOASTed values
    read back from the table are what the stream would have sent."""
    t = names.table
    await _toast_table(pg, t)
    src = _source(pg_dsn, names, snapshot="never")
    agen = src.read(None)
    task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 3))
    await _streaming(pg, names.slot, task)
    await pg.execute(TOAST_ROW.format(t=t))
    await pg.execute(f"UPDATE {t} SET id = 2")
    batches = await task
    await agen.aclose()
    want = await reference.fetch_rows(pg_dsn, t)
    changes = _changes(batches)
    assert [op for op, _ in changes] == [Op.INSERT, Op.DELETE, Op.INSERT]
    assert len(changes[2][1]["pad"]) == 3000
    _assert_rows_equal([changes[2][1]], want)
    _assert_rows_equal([{**changes[0][1], "id": 2}], want)


async def test_full_identity_update_takes_unchanged_values_from_the_before_image(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """Item 4: under REPLICA IDENTITY FULL the old row holds the whole value: the new row
    of an update carries it, not UNCHANGED."""
    t = names.table
    await _toast_table(pg, t)
    await pg.execute(f"ALTER TABLE {t} REPLICA IDENTITY FULL")
    src = _source(pg_dsn, names, snapshot="never")
    agen = src.read(None)
    task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 4))
    await _streaming(pg, names.slot, task)
    await pg.execute(TOAST_ROW.format(t=t))
    await pg.execute(f"UPDATE {t} SET n = 2")
    await pg.execute(f"UPDATE {t} SET id = 3, n = 3")
    batches = await task
    await agen.aclose()
    want = (await reference.fetch_rows(pg_dsn, t))[3]
    changes = _changes(batches)
    assert [op for op, _ in changes] == [Op.INSERT, Op.UPDATE, Op.DELETE, Op.INSERT]
    update = changes[1][1]
    assert not reference.differences(update, {**want, "id": 1, "n": 2})
    assert not reference.differences(changes[3][1], want)


@pytest.mark.parametrize("publication", ["Hpgt_MixedCase", "with,comma", "it's", 'q"uote',
                                         "sp ace ü"])
async def test_every_valid_publication_name_works(pg: asyncpg.Connection, names: Names,
                                                  pg_dsn: str, publication: str) -> None:
    """Item 5: publication names are quoted in START_REPLICATION."""
    t = names.table
    names.publication = f"{publication}_{t[-6:]}"
    names.publications = [names.publication]
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    src = _source(pg_dsn, names, snapshot="never")
    agen = src.read(None)
    task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 1))
    await _streaming(pg, names.slot, task)
    await pg.execute(f"INSERT INTO {t} VALUES (7)")
    batches = await task
    await agen.aclose()
    assert [row for _, row in _changes(batches)] == [{"id": 7}]
    assert await pg.fetchval("SELECT count(*) FROM pg_publication WHERE pubname = $1",
                             names.publication) == 1


JSON_VALUES = [
    ("'{\"x\": 1e400}'", "('{\"x\": 1' || repeat('0', 400) || '.5}')::jsonb"),
    ("'[-1e400, 1e-400, 3.14159265358979323846264338327950288]'",
     "('[1e-400, 0.1, 1' || repeat('0', 30) || ']')::jsonb"),
    ("'123456789012345678901234567890.5'", "'{\"a\": 2.5e-5, \"b\": -0.0}'"),
]


async def test_json_numbers_beyond_float_range_are_delivered_exactly(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """Item 6: JSON numbers a float cannot hold come as exact Decimals, on both paths."""
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, j json, jb jsonb)")
    values = ", ".join(f"({i}, {j}, {jb})" for i, (j, jb) in enumerate(JSON_VALUES, 1))
    await pg.execute(f"INSERT INTO {t} VALUES {values}")
    src = _source(pg_dsn, names, snapshot="initial")
    agen = src.read(None)
    snap = await take(agen, lambda g: bool(g) and set(g[-1].position or {}) == {"lsn"})
    await pg.execute(f"INSERT INTO {t} SELECT id + 10, j, jb FROM {t}")
    streamed = await take(agen, lambda g: _rows(g) >= 3)
    await agen.aclose()
    want = await reference.fetch_rows(pg_dsn, t)
    snap_rows = [row for _, row in _changes(snap)]
    assert len(snap_rows) == 3
    _assert_rows_equal(snap_rows, want)
    _assert_rows_equal([row for _, row in _changes(streamed)], want)
    assert str(snap_rows[0]["j"]["x"]) == "1E+400"


async def test_mistyped_publication_with_an_existing_slot_says_what_to_fix(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """Item 7: an existing slot and a publication that does not exist: nothing is
    created, the error names the slot, the publications that exist and the fix."""
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    agen = _source(pg_dsn, names, snapshot="never").read(None)
    task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 1))
    await _streaming(pg, names.slot, task)
    await pg.execute(f"INSERT INTO {t} VALUES (1)")
    await task
    await agen.aclose()
    typo = names.publication + "x"
    names.publications.append(typo)
    agen = PostgresCdcSource(pg_dsn, slot=names.slot, publication=typo, tables=[t],
                             snapshot="never").read(None)
    with pytest.raises(ConfigError) as err:
        await agen.__anext__()
    await agen.aclose()
    message = str(err.value)
    assert typo in message and names.slot in message and names.publication in message
    assert "does not exist" in message
    assert not await pg.fetchval("SELECT count(*) FROM pg_publication WHERE pubname = $1",
                                 typo)


async def test_new_publication_for_tables_already_published_is_reported(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """Item 7: with a new slot a mistyped name creates a second publication: the warning
    names the publications that already publish the tables."""
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    await pg.execute(f"CREATE PUBLICATION {quote_ident(names.publication)} FOR TABLE {t}")
    typo = names.publication + "x"
    names.publications.append(typo)
    with capture_logs() as logs:
        src = PostgresCdcSource(pg_dsn, slot=names.slot, publication=typo, tables=[t],
                                snapshot="never", status_interval=0.5)
        agen = src.read(None)
        task = asyncio.ensure_future(take(agen, lambda g: _rows(g) >= 1))
        await _streaming(pg, names.slot, task)
        await pg.execute(f"INSERT INTO {t} VALUES (1)")
        await task
        await agen.aclose()
    created = [e for e in logs if e.get("publication") == typo and e["log_level"] == "warning"]
    assert created, logs
    assert names.publication in str(created[0])


async def test_snapshot_copies_what_the_publication_publishes(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """A publication with a column list and a row filter: the snapshot copies those
    columns of those rows, as the stream sends them (PostgreSQL 15+)."""
    t = names.table
    await pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, a text, secret text, n int)")
    await pg.execute(f"INSERT INTO {t} SELECT g, 'a' || g, 's', g FROM generate_series(1, 6) g")
    await pg.execute(f"CREATE PUBLICATION {names.publication} FOR TABLE {t} (id, a, n) "
                     "WHERE (n % 2 = 0)")
    src = _source(pg_dsn, names, create_publication=False, snapshot_chunk_rows=2)
    agen = src.read(None)
    try:
        snap = await take(agen, lambda g: bool(g) and set(g[-1].position or {}) == {"lsn"})
        await pg.execute(f"INSERT INTO {t} VALUES (7, 'a7', 's', 7), (8, 'a8', 's', 8)")
        streamed = await take(agen, lambda g: _rows(g) >= 1)
    finally:
        await agen.aclose()
    assert [row for _, row in _changes(snap)] == [
        {"id": k, "a": f"a{k}", "n": k} for k in (2, 4, 6)]
    assert [row for _, row in _changes(streamed)] == [{"id": 8, "a": "a8", "n": 8}]


async def test_keys_of_text_form_types_page_the_snapshot_and_fill_key_changes(
        pg: asyncpg.Connection, names: Names, pg_dsn: str) -> None:
    """Primary keys of types the stream gives as text (inet, an enum) work as keyset
    positions and as the key of a read-back on a key change."""
    t = names.table
    await _types(pg, names, f"CREATE TYPE {t}_kind AS ENUM ('b', 'a')")
    await pg.execute(f"CREATE TABLE {t} (addr inet, kind {t}_kind, doc text, "
                     "PRIMARY KEY (addr, kind))")
    await pg.execute(f"ALTER TABLE {t} ALTER COLUMN doc SET STORAGE EXTERNAL")
    await pg.execute(f"INSERT INTO {t} SELECT ('10.0.0.' || g)::inet, k::{t}_kind, "
                     "repeat('d', 3000) FROM generate_series(1, 3) g, unnest('{a,b}'::text[]) k")
    src = _source(pg_dsn, names, snapshot_chunk_rows=2)
    agen = src.read(None)
    try:
        snap = await take(agen, lambda g: bool(g) and set(g[-1].position or {}) == {"lsn"})
        await pg.execute(f"UPDATE {t} SET addr = '::1' WHERE addr = '10.0.0.1' AND kind = 'a'")
        streamed = await take(agen, lambda g: _rows(g) >= 2)
    finally:
        await agen.aclose()
    assert [(r["addr"], r["kind"]) for _, r in _changes(snap)] == [
        (f"10.0.0.{g}", k) for g in (1, 2, 3) for k in ("b", "a")]
    assert _changes(streamed) == [(Op.DELETE, {"addr": "10.0.0.1", "kind": "a"}),
                                  (Op.INSERT, {"addr": "::1", "kind": "a", "doc": "d" * 3000})]
