"""Joins: lookup joins (SQLite, memory, PostgreSQL) with batched lookups, a TTL cache and
miss policies; interval joins against a brute-force reference; a CDC join whose applied
output always equals the join of the two tables."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import Batch, MemoryCheckpointStore, Op, Pipeline, Source
from etlsync.core.errors import StageError
from etlsync.core.schema import Column, Schema
from etlsync.operators import CdcJoin, IntervalJoin, LookupJoin, MemoryLookup, SqliteLookup
from etlsync.operators.lookup import TtlCache
from etlsync.resilience import MemoryDeadLetterSink
from etlsync.testing import CollectingSink, MemorySource


def _customers(path: Path, n: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, tier TEXT)")
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                     [(i, f"c{i}", "gold" if i % 3 == 0 else "basic") for i in range(n)])
    conn.commit()
    conn.close()


async def test_lookup_join_against_sqlite_in_batches_with_a_cache(tmp_path: Path) -> None:
    db = tmp_path / "ref.db"
    _customers(db, 100)
    lookup = SqliteLookup(str(db), "customers", "id", columns=["name", "tier"])
    fetched: list[int] = []
    original = lookup.fetch

    async def counting(keys: Any) -> Any:
        fetched.append(len(keys))
        return await original(keys)

    lookup.fetch = counting  # type: ignore[method-assign]
    rows = [{"order": i, "customer_id": (i * 7) % 130} for i in range(1000)]
    sink = CollectingSink()
    op = LookupJoin(lookup, {"customer_id": "id"})
    await Pipeline(MemorySource(rows, 200), [op], sink).run()
    assert [r["order"] for r in sink.rows] == list(range(1000))
    for r in sink.rows:
        cid = r["customer_id"]
        assert (r["name"], r["tier"]) == ((f"c{cid}", "gold" if cid % 3 == 0 else "basic")
                                          if cid < 100 else (None, None))
    assert sum(fetched) == 130  # every key fetched once: later batches hit the cache
    assert op.extra_metrics()["unmatched"] == sum(r["customer_id"] >= 100 for r in rows)


async def test_miss_policies_drop_dead_letter_and_side_output() -> None:
    lookup = MemoryLookup([{"id": 1, "name": "a"}], "id")
    rows = [{"cid": 1}, {"cid": 2}, {"cid": None}]
    sink = CollectingSink()
    await Pipeline(MemorySource(rows), [LookupJoin(lookup, {"cid": "id"}, miss="drop")],
                   sink).run()
    assert sink.rows == [{"cid": 1, "name": "a"}]
    dl = MemoryDeadLetterSink()
    sink = CollectingSink()
    await Pipeline(MemorySource(rows), [LookupJoin(lookup, {"cid": "id"}, miss="dead_letter",
                                                   dead_letter=dl)], sink).run()
    assert sink.rows == [{"cid": 1, "name": "a"}]
    assert [d.row for d in dl.letters] == [{"cid": 2}, {"cid": None}]
    with pytest.raises(StageError, match="no"):
        await Pipeline(MemorySource(rows), [LookupJoin(lookup, "cid" if False else {"cid": "id"},
                                                       miss="fail")], CollectingSink()).run()


async def test_lookup_join_against_another_sources_snapshot() -> None:
    from etlsync.operators import SnapshotLookup

    customers = MemorySource([{"id": i, "name": f"c{i}"} for i in range(50)], 7)
    sink = CollectingSink()
    join = LookupJoin(SnapshotLookup(customers, "id"), {"cid": "id"}, miss="drop")
    await Pipeline(MemorySource([{"cid": i % 60} for i in range(120)], 25), [join], sink).run()
    assert [(r["cid"], r["name"]) for r in sink.rows] == [
        (i % 60, f"c{i % 60}") for i in range(120) if i % 60 < 50]
    from etlsync.operators import StateLimitExceeded

    too_small = LookupJoin(SnapshotLookup(customers, "id", max_rows=10), {"cid": "id"})
    with pytest.raises(StageError) as info:
        await Pipeline(MemorySource([{"cid": 1}]), [too_small], CollectingSink()).run()
    assert isinstance(info.value.cause, StateLimitExceeded)


def test_the_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    cache = TtlCache(2, ttl=10, clock=lambda: now[0])
    cache.put((1,), {"a": 1})
    cache.put((2,), None)
    cache.put((3,), {"a": 3})
    assert len(cache) == 2 and cache.get((2,)) is None
    now[0] = 11
    assert cache.get((3,)) is not None and cache.get((3,)) is not None  # type: ignore[comparison-overlap]


@pytest.mark.integration
async def test_lookup_join_against_postgres(pg_dsn: str, unique_name: str) -> None:
    import asyncpg

    from etlsync.operators import PostgresLookup

    conn = await asyncpg.connect(pg_dsn)
    table = f"cust_{unique_name}"
    try:
        await conn.execute(f'CREATE TABLE "{table}" (id bigint, region text, name text, '
                           "PRIMARY KEY (id, region))")
        await conn.executemany(f'INSERT INTO "{table}" VALUES ($1, $2, $3)',
                               [(i, r, f"{r}{i}") for i in range(300) for r in ("eu", "us")])
        rows = [{"cid": i % 350, "region": ("eu", "us")[i % 2], "n": i} for i in range(2000)]
        sink = CollectingSink()
        single = LookupJoin(PostgresLookup(pg_dsn, table, ["id", "region"], columns=["name"]),
                            {"cid": "id", "region": "region"}, prefix="c_")
        await Pipeline(MemorySource(rows, 500), [single], sink).run()
        for r in sink.rows:
            want = f"{r['region']}{r['cid']}" if r["cid"] < 300 else None
            assert r["c_name"] == want
        assert len(sink.rows) == 2000
    finally:
        await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        await conn.close()


class TwoStreams(Source):
    """Yields batches of two streams in the given order (position: batches consumed)."""

    name = "two"

    def __init__(self, batches: list[tuple[str, list[dict[str, Any]], list[Op] | None]],
                 schemas: dict[str, Schema] | None = None) -> None:
        self.batches, self.schemas = batches, schemas or {}

    async def read(self, position: Any) -> AsyncIterator[Batch]:
        for i in range(int(position or 0), len(self.batches)):
            stream, rows, ops = self.batches[i]
            yield Batch(rows, stream, i + 1, ops, schema=self.schemas.get(stream))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(st.tuples(st.booleans(), st.integers(0, 4), st.integers(0, 6)),
                       max_size=80),
       size=st.integers(1, 10), how=st.sampled_from(["inner", "left"]))
async def test_interval_join_equals_a_brute_force_join(events: list[tuple[bool, int, int]],
                                                       size: int, how: str) -> None:
    t, left, right = 0, [], []
    for is_left, key, step in events:
        t += step
        (left if is_left else right).append({"k": key, "t": t, "id": len(left) + len(right)})
    merged = sorted([("L", r) for r in left] + [("R", r) for r in right],
                    key=lambda x: (x[1]["t"], x[1]["id"]))
    batches: list[tuple[str, list[dict[str, Any]], Any]] = []
    for i in range(0, len(merged), size):  # runs of one stream at a time
        for name in ("L", "R"):
            part = [r for s, r in merged[i:i + size] if s == name]
            if part:
                batches.append((name, [{**r, "side": name} for r in part], None))
    op = IntervalJoin("L", "R", "k", time_column="t", within=3, how=how, right_prefix="r_")
    sink = CollectingSink()
    await Pipeline(TwoStreams(batches), [op], sink).run()
    got = sorted((r["id"], r.get("r_id")) for r in sink.rows)
    want = [(lr["id"], rr["id"]) for lr in left for rr in right
            if lr["k"] == rr["k"] and abs(lr["t"] - rr["t"]) <= 3]
    if how == "left":
        matched = {a for a, _ in want}
        want += [(lr["id"], None) for lr in left if lr["id"] not in matched]
    assert got == sorted(want, key=lambda x: (x[0], -1 if x[1] is None else x[1]))


async def test_interval_join_buffers_survive_a_restart() -> None:
    rng = random.Random(11)
    batches: list[tuple[str, list[dict[str, Any]], Any]] = []
    t = 0
    for i in range(200):
        t += rng.randrange(3)
        side = rng.choice(["L", "R"])
        batches.append((side, [{"k": rng.randrange(5), "t": t, "id": i}], None))

    def op() -> IntervalJoin:
        return IntervalJoin("L", "R", "k", time_column="t", within=4, right_prefix="r_")

    clean = CollectingSink()
    await Pipeline(TwoStreams(batches), [op()], clean).run()
    store = MemoryCheckpointStore()
    calls = {"n": 0}

    def crash(batch: Batch) -> None:
        calls["n"] += 1
        if calls["n"] == 30:
            raise OSError("crash")

    sink = CollectingSink(fail_on=crash)
    with pytest.raises(StageError):
        await Pipeline(TwoStreams(batches), [op()], sink, name="ij", checkpoint_store=store).run()
    await Pipeline(TwoStreams(batches), [op()], sink, name="ij", checkpoint_store=store).run()
    pairs = sorted((r["id"], r["r_id"]) for r in sink.rows)
    assert pairs == sorted((r["id"], r["r_id"]) for r in clean.rows)  # each match once
    assert len(pairs) > 50


def _random_changes(rng: random.Random, n: int) -> list[tuple[str, list[dict[str, Any]],
                                                            list[Op]]]:
    orders: dict[int, dict[str, Any]] = {}
    customers: dict[int, dict[str, Any]] = {}
    out: list[tuple[str, list[dict[str, Any]], list[Op]]] = []
    for i in range(n):
        if rng.random() < 0.5:
            oid = rng.randrange(25)
            if oid in orders and rng.random() < 0.3:
                out.append(("orders", [{"id": oid}], [Op.DELETE]))
                del orders[oid]
            else:
                row = {"id": oid, "cust": rng.randrange(8), "amount": rng.randrange(100)}
                out.append(("orders", [row], [Op.UPDATE if oid in orders else Op.INSERT]))
                orders[oid] = row
        else:
            cid = rng.randrange(8)
            if cid in customers and rng.random() < 0.3:
                out.append(("customers", [{"id": cid}], [Op.DELETE]))
                del customers[cid]
            else:
                row = {"id": cid, "name": f"n{i}"}
                out.append(("customers", [row], [Op.UPDATE if cid in customers else Op.INSERT]))
                customers[cid] = row
    return out


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("seed", range(4))
async def test_cdc_join_keeps_the_target_equal_to_the_join_of_both_tables(
        tmp_path: Path, how: str, seed: int) -> None:
    from etlsync.connectors.sqlite import SqliteSink

    rng = random.Random(seed)
    changes = _random_changes(rng, 300)
    schemas = {"orders": Schema((Column("id"), Column("cust"), Column("amount")), ("id",)),
               "customers": Schema((Column("id"), Column("name")), ("id",))}
    db = tmp_path / "j.db"
    store = MemoryCheckpointStore()
    sink = SqliteSink(db, table="joined", write_mode="upsert", primary_key=["id"])
    op = CdcJoin("orders", "customers", {"cust": "id"}, how=how, right_prefix="c_")
    # a crash half-way, then a restart from the checkpoint
    fails = {"n": 0}

    class Crashing(CollectingSink):
        async def write(self, batch: Batch) -> None:
            fails["n"] += 1
            if fails["n"] == 120:
                raise OSError("crash")

    with pytest.raises(StageError):
        await Pipeline(TwoStreams(changes, schemas), [op], [sink, Crashing()], name="j",
                       checkpoint_store=store).run()
    await Pipeline(TwoStreams(changes, schemas), [op], [sink], name="j",
                   checkpoint_store=store).run()
    orders: dict[int, dict[str, Any]] = {}
    customers: dict[int, dict[str, Any]] = {}
    for stream, rows, ops in changes:
        table = orders if stream == "orders" else customers
        for r, o in zip(rows, ops, strict=True):
            if o is Op.DELETE:
                table.pop(r["id"], None)
            else:
                table[r["id"]] = r
    want = sorted((o["id"], o["cust"], o["amount"], customers[o["cust"]]["name"])
                  for o in orders.values() if o["cust"] in customers)
    if how == "left":
        want = sorted(want + [(o["id"], o["cust"], o["amount"], None) for o in orders.values()
                              if o["cust"] not in customers])
    conn = sqlite3.connect(db)
    try:
        got = sorted(conn.execute("SELECT id, cust, amount, c_name FROM joined").fetchall())
    except sqlite3.OperationalError:
        got = []
    conn.close()
    assert got == want
