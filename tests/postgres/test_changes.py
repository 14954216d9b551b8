"""The net effect of a change batch equals applying its changes one by one (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etlsync import Batch, Op
from etlsync.connectors.postgres import UNCHANGED
from etlsync.connectors.postgres.changes import (
    group_upserts,
    insert_group,
    net_changes,
    plain_group,
)
from etlsync.core.errors import ConflictError
from etlsync.core.modes import ConflictStrategy

COLS = ("a", "b")
Store = dict[int, dict[str, Any]]


def sequential(store: Store, changes: list[tuple[Op, dict[str, Any]]],
               strategy: ConflictStrategy) -> Store:
    """The reference: apply each change to the stored rows in order."""
    out = {k: dict(v) for k, v in store.items()}
    for op, row in changes:
        k = row.get("id")
        if op is Op.TRUNCATE:
            out.clear()
        elif op is Op.DELETE:
            out.pop(k, None)
        elif op is Op.UPDATE or strategy is ConflictStrategy.MERGE:
            base = out.get(k, {c: None for c in COLS})
            base.update({c: v for c, v in row.items() if c != "id" and v is not UNCHANGED})
            out[k] = base
        elif k in out and strategy is ConflictStrategy.SKIP:
            continue
        elif k in out and strategy is ConflictStrategy.FAIL:
            raise ConflictError(str(k))
        else:
            out[k] = {c: row.get(c) for c in COLS}
    return out


def apply_net(store: Store, batch: Batch, strategy: ConflictStrategy) -> Store:
    """What the sink's SQL does with the net changes (a model of the statements)."""
    out = {k: dict(v) for k, v in store.items()}
    net = net_changes(batch, ["id"], strategy)
    if any(k in out for (k,) in net.must_be_absent):
        raise ConflictError("voided insert met a stored row")
    if net.truncate:
        out.clear()
    for (k,) in net.deletes:
        out.pop(k, None)
    for (cols, mode, unchanged, update), rows in group_upserts(net).items():
        for row in rows:
            k = row["id"]
            if k not in out:
                if mode is ConflictStrategy.SKIP or k not in out:
                    out[k] = {c: row.get(c) for c in COLS}
                continue
            if mode is ConflictStrategy.FAIL:
                raise ConflictError(str(k))
            if mode is ConflictStrategy.SKIP:
                continue
            for c in COLS:
                if c in cols and (mode is ConflictStrategy.OVERWRITE or c in update):
                    out[k][c] = row[c]
                elif mode is ConflictStrategy.OVERWRITE and c not in cols and c not in unchanged:
                    out[k][c] = None
    return out


value = st.one_of(st.integers(0, 3), st.none())
change = st.tuples(
    st.sampled_from([Op.INSERT, Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE]),
    st.integers(0, 4),
    st.dictionaries(st.sampled_from(COLS), st.one_of(value, st.just(UNCHANGED)), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(store=st.dictionaries(st.integers(0, 4), st.fixed_dictionaries({c: value for c in COLS})),
       changes=st.lists(change, max_size=12),
       strategy=st.sampled_from(list(ConflictStrategy)))
def test_net_changes_equal_sequential_application(
        store: Store, changes: list[tuple[Op, int, dict[str, Any]]],
        strategy: ConflictStrategy) -> None:
    seq: list[tuple[Op, dict[str, Any]]] = []
    for op, k, cols in changes:
        if op is Op.INSERT:  # inserts never carry UNCHANGED (that is a CDC update marker)
            cols = {c: (None if v is UNCHANGED else v) for c, v in cols.items()}
        seq.append((op, {} if op is Op.TRUNCATE else {"id": k, **cols}))
    batch = Batch([r for _, r in seq], ops=[op for op, _ in seq])
    try:
        expected: Store | None = sequential(store, seq, strategy)
    except ConflictError:
        expected = None
    if expected is None:
        with pytest.raises(ConflictError):
            apply_net(store, batch, strategy)
    else:
        assert apply_net(store, batch, strategy) == expected


def test_plain_group_applies_only_to_uniform_distinct_inserts() -> None:
    rows = [{"id": 1, "a": 1}, {"id": 2, "a": 2}]
    assert plain_group(Batch(rows), ["id"], ConflictStrategy.MERGE) is not None
    assert plain_group(Batch([*rows, {"id": 1, "a": 3}]), ["id"], ConflictStrategy.MERGE) is None
    assert plain_group(Batch([{"id": 1}, {"id": 2, "a": 2}]), ["id"],
                       ConflictStrategy.MERGE) is None
    assert plain_group(Batch(rows, ops=[Op.INSERT, Op.INSERT]), ["id"],
                       ConflictStrategy.MERGE) is None


def test_insert_group_applies_to_change_batches_of_distinct_complete_inserts() -> None:
    rows = [{"id": 1, "a": 1}, {"id": 2, "a": 2}]
    ins = [Op.INSERT, Op.INSERT]
    [(group, got)] = (insert_group(Batch(rows, ops=ins), ["id"], ConflictStrategy.MERGE)
                      or {}).items()
    assert group == (("a", "id"), ConflictStrategy.MERGE, frozenset(), frozenset({"a", "id"}))
    assert list(got.column("id")) == [1, 2] and list(got.column("a")) == [1, 2]
    assert insert_group(Batch(rows), ["id"], ConflictStrategy.MERGE) is None  # no ops
    assert insert_group(Batch(rows, ops=[Op.INSERT, Op.UPDATE]), ["id"],
                        ConflictStrategy.MERGE) is None
    assert insert_group(Batch([*rows, {"id": 1, "a": 3}], ops=[*ins, Op.INSERT]), ["id"],
                        ConflictStrategy.MERGE) is None
    assert insert_group(Batch([{"id": 1, "a": UNCHANGED}, {"id": 2, "a": 2}], ops=ins), ["id"],
                        ConflictStrategy.MERGE) is None
    assert insert_group(Batch([{"id": None, "a": 1}, {"id": 2, "a": 2}], ops=ins), ["id"],
                        ConflictStrategy.MERGE) is None
    assert insert_group(Batch([{"a": 1}, {"a": 2}], ops=ins), ["id"],
                        ConflictStrategy.MERGE) is None
    assert insert_group(Batch([{"id": 1}, {"id": 2, "a": 2}], ops=ins), ["id"],
                        ConflictStrategy.MERGE) is None


def test_plain_group_keeps_record_form_and_checks_keys() -> None:
    batch = Batch.from_records(("id", "r", "v"), [(1, "eu", "a"), (1, "us", "b")])
    [(group, got)] = (plain_group(batch, ["id", "r"], ConflictStrategy.SKIP) or {}).items()
    assert group[0] == ("id", "r", "v") and batch.records is not None
    assert list(got.column("v")) == ["a", "b"]
    assert plain_group(batch, ["id"], ConflictStrategy.SKIP) is None  # repeated key
    assert plain_group(batch, ["nope"], ConflictStrategy.SKIP) is None
    nulls = Batch.from_records(("id", "v"), [(None, "a"), (2, "b")])
    assert plain_group(nulls, ["id"], ConflictStrategy.SKIP) is None
