"""The sink contract, for every sink type of ``tests/contracts/connectors.py``: write modes,
conflict strategies, schema policies, change batches, hostile identifiers, a stop in the middle
of a pass and the end-of-pass swap. What a sink supports comes from its manifest; what it does
not support it refuses with a ConfigError naming the option."""

from __future__ import annotations

import pytest

from etlsync.core.batch import Batch, Op
from etlsync.core.capabilities import Capability, has
from etlsync.core.errors import ConfigError, ConflictError, SchemaError, StageError
from etlsync.core.pipeline import Pipeline
from etlsync.jobs.build import build_job
from tests.contracts.conftest import SinkCase
from tests.contracts.harness import (
    CONFLICTS,
    POLICIES,
    WRITE_MODES,
    BatchSource,
    HeldSource,
    Stores,
    error_chain,
    job_document,
    numbered,
    parse,
    run,
    run_stopped,
    table_of,
)

COLS = ("id", "name", "v")


def expect(rows: list[dict[str, object]], columns: tuple[str, ...] = COLS
           ) -> list[tuple[str | None, ...]]:
    got = table_of(rows, columns)
    assert got is not None
    return got


def need(sink: SinkCase, option: str, value: str) -> None:
    if not sink.can(option, value):
        pytest.skip(f"{sink.factory.type} takes no {option} {value!r} (refusal: "
                    "test_what_a_sink_cannot_do_is_a_config_error)")


async def test_append_adds_every_row_of_every_run(sink: SinkCase) -> None:
    stores = Stores()
    first, second = numbered(7), numbered(5, start=7)
    assert (await run(HeldSource(first, 3), sink.build(write_mode="append"), sink.table,
                      stores)).status == "completed"
    assert table_of(await sink.rows(), COLS) == expect(first)
    await run(HeldSource(second, 2), sink.build(write_mode="append"), sink.table, stores)
    assert table_of(await sink.rows(), COLS) == expect(first + second)


@pytest.mark.parametrize("mode", WRITE_MODES)
def test_what_a_sink_cannot_do_is_a_config_error(sink: SinkCase, mode: str) -> None:
    """A write mode, conflict strategy or schema policy the manifest does not list is refused
    when the job is built, naming the option: never silently written some other way."""
    def build(write: dict[str, object]) -> None:
        doc = job_document({"type": "memory", "rows": []},
                           {"type": sink.factory.type, **sink.target.location(sink.table),
                            **sink.factory.options}, write=write, checkpoint={"type": "memory"},
                           sync={"primary_key": ["id"]})
        build_job(parse(doc, sink.tmp))

    if sink.can("write_mode", mode):
        build({"write_mode": mode})
    else:
        with pytest.raises(ConfigError, match="write_mode"):
            build({"write_mode": mode})
    for option, values, default in (("conflict", CONFLICTS, "overwrite"),
                                    ("schema_policy", POLICIES, "evolve")):
        for value in values:
            if value != default and not sink.can(option, value):  # the default: never refused
                with pytest.raises(ConfigError, match=option):
                    build({option: value})


async def test_overwrite_installs_each_complete_pass(sink: SinkCase) -> None:
    need(sink, "write_mode", "overwrite")
    stores = Stores()
    old, new = numbered(6, tag="old"), numbered(4, start=100, tag="new")
    await run(HeldSource(old, 4), sink.build(write_mode="overwrite"), sink.table, stores)
    assert table_of(await sink.rows(), COLS) == expect(old)
    await run(HeldSource(new, 3), sink.build(write_mode="overwrite"), sink.table, stores)
    assert table_of(await sink.rows(), COLS) == expect(new)
    assert await sink.target.leftovers(sink.table) == []


async def test_a_stop_mid_pass_keeps_the_old_data_and_the_next_run_installs_the_pass(
        sink: SinkCase) -> None:
    need(sink, "write_mode", "overwrite")
    stores = Stores()
    old, new = numbered(5, tag="old"), numbered(30, start=50, tag="new")
    await run(HeldSource(old, 5), sink.build(write_mode="overwrite"), sink.table, stores)
    name = f"{sink.table}-2"
    summary = await run_stopped(HeldSource(new, 4, hold_after=3),
                                sink.build(write_mode="overwrite"), name, stores)
    assert summary.status == "stopped" and summary.rows_written >= 12
    assert table_of(await sink.rows(), COLS) == expect(old)  # readers still see the old set
    done = await run(HeldSource(new, 4), sink.build(write_mode="overwrite"), name, stores)
    assert done.status == "completed"
    assert table_of(await sink.rows(), COLS) == expect(new)  # each row once: no staged dup
    assert await sink.target.leftovers(sink.table) == []


async def test_a_failure_mid_pass_keeps_the_old_data(sink: SinkCase) -> None:
    need(sink, "write_mode", "overwrite")
    stores = Stores()
    old = numbered(5, tag="old")
    await run(HeldSource(old, 5), sink.build(write_mode="overwrite"), sink.table, stores)
    failing = sink.build(write_mode="overwrite")
    with pytest.raises(StageError, match="failed mid-pass"):
        await run(HeldSource(numbered(30, start=50), 4, fail_after=3), failing,
                  f"{sink.table}-2", stores)
    assert table_of(await sink.rows(), COLS) == expect(old)
    if not has(failing, Capability.TRANSACTIONAL):  # it held the pass: nothing committed
        assert [c for c in stores.memory.commits if c[0] == f"{sink.table}-2"] == []


SEED = [{"id": 1, "a": "a1", "b": "b1"}, {"id": 2, "a": "a2", "b": "b2"}]
INCOMING = [{"id": 2, "a": "A2"}, {"id": 3, "a": "a3", "b": "b3"}]
AFTER = {
    "skip": [("1", "a1", "b1"), ("2", "a2", "b2"), ("3", "a3", "b3")],
    "overwrite": [("1", "a1", "b1"), ("2", "A2", None), ("3", "a3", "b3")],
    "merge": [("1", "a1", "b1"), ("2", "A2", "b2"), ("3", "a3", "b3")],
}


@pytest.mark.parametrize("conflict", CONFLICTS)
async def test_upsert_applies_the_conflict_strategy(sink: SinkCase, conflict: str) -> None:
    """``skip`` keeps the stored row; ``overwrite`` replaces it (absent columns become NULL);
    ``merge`` sets the columns given; ``fail`` raises ConflictError naming the key and, where
    the sink is transactional, writes nothing of the batch."""
    need(sink, "write_mode", "upsert")
    need(sink, "conflict", conflict)
    stores = Stores()
    opts = {"write_mode": "upsert", "primary_key": ["id"], "conflict": conflict}
    await run(HeldSource(SEED, 2), sink.build(**opts), f"{sink.table}-1", stores)
    seeded = table_of(await sink.rows(), ("id", "a", "b"))
    assert seeded == [("1", "a1", "b1"), ("2", "a2", "b2")]
    later = sink.build(**opts)
    if conflict == "fail":
        with pytest.raises(StageError) as info:
            await run(HeldSource(INCOMING, 2), later, f"{sink.table}-2", stores)
        conflicts = [e for e in error_chain(info.value) if isinstance(e, ConflictError)]
        assert conflicts and "2" in str(conflicts[0]), error_chain(info.value)
        if has(later, Capability.TRANSACTIONAL):
            assert table_of(await sink.rows(), ("id", "a", "b")) == seeded
        return
    await run(HeldSource(INCOMING, 2), later, f"{sink.table}-2", stores)
    assert table_of(await sink.rows(), ("id", "a", "b")) == AFTER[conflict]


@pytest.mark.parametrize("policy", POLICIES)
async def test_schema_policy_for_a_column_the_target_lacks(sink: SinkCase, policy: str) -> None:
    need(sink, "schema_policy", policy)
    stores = Stores()
    await run(HeldSource(numbered(2), 2), sink.build(), f"{sink.table}-1", stores)
    wider = [{"id": 5, "name": "r5", "v": 50, "extra": "x5"}]
    later = sink.build(schema_policy=policy)
    if policy == "freeze":
        with pytest.raises(StageError) as info:
            await run(HeldSource(wider, 1), later, f"{sink.table}-2", stores)
        errors = [e for e in error_chain(info.value) if isinstance(e, SchemaError)]
        assert errors and "extra" in str(errors[0])
        assert table_of(await sink.rows(), COLS) == expect(numbered(2))
        return
    await run(HeldSource(wider, 1), later, f"{sink.table}-2", stores)
    rows = await sink.rows()
    assert rows is not None
    assert table_of(rows, COLS) == expect(numbered(2) + wider)
    has_column = any("extra" in r for r in rows)
    if policy == "discard":
        assert not has_column
    else:
        assert table_of(rows, ("id", "extra")) == [("0", None), ("1", None), ("5", "x5")]


def _changes() -> list[Batch]:
    rows = numbered(4)
    return [
        Batch(rows, stream="rows"),
        Batch([{"id": 1, "name": "one", "v": 11},           # an update in place
               {"id": 30, "name": "thirty", "v": 300},      # an update moving key 3 to 30
               {"id": 0, "name": "r0", "v": 0}],            # a delete
              stream="rows", ops=[Op.UPDATE, Op.UPDATE, Op.DELETE],
              before=[{"id": 1, "name": "r1", "v": 10}, {"id": 3, "name": "r3", "v": 30},
                      {"id": 0, "name": "r0", "v": 0}]),
    ]


async def test_change_batches_update_move_keys_and_delete(sink: SinkCase) -> None:
    probe = sink.build(write_mode="upsert" if sink.can("write_mode", "upsert") else "append")
    if not has(probe, Capability.CHANGES):
        if sink.factory.keeps_changes:
            pytest.skip("a collector keeps change batches as they are")
        with pytest.raises(StageError, match="update"):
            await run(BatchSource(_changes()), probe, sink.table, Stores())
        return
    stores = Stores()
    await run(BatchSource(_changes()), sink.build(write_mode="upsert", primary_key=["id"]),
              sink.table, stores)
    assert table_of(await sink.rows(), COLS) == [
        ("1", "one", "11"), ("2", "r2", "20"), ("30", "thirty", "300")]
    truncate = [Batch([{}], stream="rows", ops=[Op.TRUNCATE]),
                Batch([{"id": 9, "name": "r9", "v": 90}], stream="rows", ops=[Op.INSERT])]
    await run(BatchSource(truncate), sink.build(write_mode="upsert", primary_key=["id"]),
              f"{sink.table}-2", stores)
    assert table_of(await sink.rows(), COLS) == [("9", "r9", "90")]


HOSTILE_COLUMNS = ('k"ey; 1', "select", "order", "it's", "dot.ted", "sp ace", "ünï表",
                   "back`tick", "per%cent", "dollar$1", "back\\slash", "MixedCase")
HOSTILE_TABLE = 'q"t\'s `b` d.t s;c ü表 %s $1'


def _allowed(sink: SinkCase, name: str) -> str:
    return "".join(ch for ch in name if ch not in sink.factory.reserved)


async def test_hostile_identifiers_are_quoted_everywhere(sink: SinkCase) -> None:
    """Quotes, dots, spaces, semicolons, unicode and reserved words in table and column
    names reach the target as given, in every write mode the sink has."""
    cols = tuple(c for c in HOSTILE_COLUMNS if _allowed(sink, c) == c)
    key = cols[0]
    rows = [{c: f"{c}={i}" for c in cols} for i in range(3)]
    stores = Stores()
    for mode in (m for m in WRITE_MODES if sink.can("write_mode", m)):
        table = (f"{sink.table} {_allowed(sink, HOSTILE_TABLE)} {mode}"
                 if sink.factory.hostile_tables else f"{sink.table}-{mode}")
        opts = {"write_mode": mode, **({"primary_key": [key]} if sink.takes("primary_key") else {})}
        await run(HeldSource(rows, 2), sink.build(table, **opts), table, stores)
        assert table_of(await sink.rows(table), cols, key=key) == table_of(rows, cols, key=key)
        if mode == "upsert":
            changed = [{**rows[1], cols[1]: "changed"}]
            await run(HeldSource(changed, 1), sink.build(table, **opts), f"{table}-u", stores)
            got = await sink.rows(table)
            assert got is not None and {r[key]: r[cols[1]] for r in got}[rows[1][key]] == "changed"


async def test_nul_in_an_identifier_is_a_config_error(sink: SinkCase) -> None:
    if not sink.factory.hostile_tables:
        pytest.skip("its names are paths or none, not identifiers")
    for table, rows in ((f"{sink.table}\x00x", numbered(1)),
                        (sink.table, [{"id": 1, "c\x00d": "x"}])):
        with pytest.raises((StageError, ConfigError)) as info:
            await run(HeldSource(rows, 1), sink.build(table), f"{sink.table}-nul", Stores())
        named = [e for e in error_chain(info.value) if "nul" in str(e).lower()]
        assert named, error_chain(info.value)


async def test_upsert_into_a_table_without_a_key_on_primary_key(sink: SinkCase) -> None:
    """A table an append created (no unique key) takes upserts on ``primary_key``: each key
    once, as it does into a table the sink created for upserts."""
    need(sink, "write_mode", "upsert")
    stores = Stores()
    await run(HeldSource(numbered(3), 2), sink.build(write_mode="append"), f"{sink.table}-1",
              stores)
    changed = [{"id": 1, "name": "one", "v": 11}, {"id": 7, "name": "r7", "v": 70}]
    await run(HeldSource(changed, 2), sink.build(write_mode="upsert", primary_key=["id"]),
              f"{sink.table}-2", stores)
    assert table_of(await sink.rows(), COLS) == [
        ("0", "r0", "0"), ("1", "one", "11"), ("2", "r2", "20"), ("7", "r7", "70")]


async def test_a_transactional_sink_owns_the_checkpoint_it_writes_with_the_data(
        sink: SinkCase) -> None:
    built = sink.build(write_mode="append")
    if not has(built, Capability.TRANSACTIONAL):
        pytest.skip("not transactional: the runner writes a separate store")
    pipeline = Pipeline(HeldSource(numbered(9), 4), [], [built], name=sink.table)
    store, owner = pipeline.resolve_checkpoint_store()
    assert owner == 0
    await pipeline.run(handle_signals=False)
    checkpoint = await store.load(sink.table)
    assert checkpoint is not None and checkpoint.position == 9 and not checkpoint.pass_open
    await store.close()
