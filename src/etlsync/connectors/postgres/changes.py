"""How a batch of changes becomes SQL: the net effect per primary key (pure Python), and the
statements that apply it. :class:`~etlsync.connectors.postgres.sink.PostgresSink` is the only
caller; CDC readers feed it batches with ``ops``.

Rules (per batch, in row order):

- ``TRUNCATE`` empties the table; earlier changes of the batch are void.
- ``DELETE`` removes the key (its key comes from the row, else from ``before``).
- ``INSERT`` follows the sink's conflict strategy (skip / overwrite / merge / fail).
- ``UPDATE`` updates the columns present in the row (a missing key is inserted); an update
  whose ``before`` key differs from the new key deletes the old key first. Values equal to
  :data:`~etlsync.connectors.postgres.types.UNCHANGED` keep the stored value.
- Several changes of one key in one batch combine into one (the statement may touch a key
  only once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import is_
from typing import Any

from etlsync.connectors.postgres.payload import Rows
from etlsync.connectors.postgres.types import UNCHANGED
from etlsync.core.batch import Batch, Op, Row
from etlsync.core.errors import ConflictError, DataError
from etlsync.core.modes import ConflictStrategy

Key = tuple[Any, ...]


@dataclass(slots=True)
class Pending:
    """One key's net upsert: the row (source names), how it applies, and unchanged columns."""

    row: Row
    mode: ConflictStrategy
    unchanged: frozenset[str] = frozenset()
    update_cols: frozenset[str] | None = None
    """For ``merge``: the columns an existing row takes from ``row`` (default: all in it)."""
    meets_stored: bool = False
    """A ``fail`` insert that would meet the stored row (no delete of its key came first)."""


@dataclass(slots=True)
class NetChanges:
    """The net effect of a batch: truncate first, then deletes, then upserts."""

    truncate: bool = False
    deletes: dict[Key, None] = field(default_factory=dict)
    upserts: dict[Key, Pending] = field(default_factory=dict)
    must_be_absent: dict[Key, None] = field(default_factory=dict)
    """Keys of ``fail`` inserts that a later delete or truncate voided: they must not exist
    before the batch (checked first), or the insert would have conflicted."""

    def void(self, key: Key) -> None:
        p = self.upserts.pop(key, None)
        if p is not None and p.meets_stored:
            self.must_be_absent[key] = None


def _key_of(row: Row | None, pk: Sequence[str]) -> Key | None:
    if row is None:
        return None
    try:
        key = tuple(row[k] for k in pk)
    except KeyError:
        return None
    if any(v is None or v is UNCHANGED for v in key):
        return None
    return key


def _split_unchanged(row: Row) -> tuple[Row, frozenset[str]]:
    gone = [k for k, v in row.items() if v is UNCHANGED]
    if not gone:
        return row, frozenset()
    return {k: v for k, v in row.items() if v is not UNCHANGED}, frozenset(gone)


def net_changes(batch: Batch, pk: Sequence[str], strategy: ConflictStrategy) -> NetChanges:
    """Reduce ``batch`` to its net effect per primary key (``pk`` in the rows' names).

    :raises ConflictError: an insert repeats a key within the batch under ``fail``.
    :raises DataError: a row lacks its primary key.
    """
    net = NetChanges()
    before = batch.before
    for i, (op, raw) in enumerate(batch.iter_changes()):
        if op is Op.TRUNCATE:
            for pending in list(net.upserts):
                net.void(pending)
            net.truncate = True
            net.deletes.clear()
            continue
        old = before[i] if before is not None else None
        if op is Op.DELETE:
            gone = _key_of(raw, pk) or _key_of(old, pk)
            if gone is None:
                raise DataError(f"delete in stream {batch.stream!r} carries no primary key "
                                f"{list(pk)}", row=raw)
            net.void(gone)
            net.deletes[gone] = None
            continue
        found = _key_of(raw, pk)
        if found is None:
            raise DataError(f"row in stream {batch.stream!r} lacks primary key {list(pk)}",
                            row=raw)
        key = found
        row, unchanged = _split_unchanged(raw)
        if op is Op.UPDATE:
            old_key = _key_of(old, pk)
            if old_key is not None and old_key != key:
                net.void(old_key)
                net.deletes[old_key] = None
            mode = ConflictStrategy.MERGE
        else:
            mode = strategy
        prev = net.upserts.get(key)
        if prev is None:
            meets = mode is ConflictStrategy.FAIL and not net.truncate and key not in net.deletes
            net.upserts[key] = Pending(row, mode, unchanged, None, meets)
            continue
        if mode is ConflictStrategy.SKIP:
            continue
        if mode is ConflictStrategy.FAIL:
            raise ConflictError(f"key {_show(pk, key)} occurs twice in one batch of stream "
                                f"{batch.stream!r} (conflict strategy 'fail')")
        if mode is ConflictStrategy.OVERWRITE:
            keep = {c: prev.row[c] for c in unchanged if c in prev.row}
            net.upserts[key] = Pending({**row, **keep}, ConflictStrategy.OVERWRITE,
                                       frozenset(unchanged - keep.keys()))
        else:  # merge / update onto what the batch already holds for this key
            still = frozenset((prev.unchanged | unchanged) - row.keys() - prev.row.keys())
            if prev.mode in (ConflictStrategy.OVERWRITE, ConflictStrategy.FAIL):
                net.upserts[key] = Pending({**prev.row, **row}, prev.mode, still, None,
                                           prev.meets_stored)
                continue
            # after skip: a stored row only takes this change; after merge: both changes
            cols = frozenset(row) if prev.mode is ConflictStrategy.SKIP else (
                (prev.update_cols if prev.update_cols is not None else frozenset(prev.row))
                | frozenset(row))
            net.upserts[key] = Pending({**prev.row, **row}, ConflictStrategy.MERGE, still, cols)
    return net


Group = tuple[tuple[str, ...], ConflictStrategy, frozenset[str], frozenset[str]]
"""(columns present, mode, unchanged columns, columns a merge updates)."""


def group_upserts(net: NetChanges) -> dict[Group, list[Row] | Rows]:
    """Upserts grouped by :data:`Group`: one statement each."""
    groups: dict[Group, list[Row]] = {}
    for p in net.upserts.values():
        cols = tuple(sorted(p.row))
        update = p.update_cols if p.update_cols is not None else frozenset(cols)
        groups.setdefault((cols, p.mode, p.unchanged, update), []).append(p.row)
    return dict(groups)


def plain_group(batch: Batch, pk: Sequence[str],
                strategy: ConflictStrategy) -> dict[Group, list[Row] | Rows] | None:
    """The fast path for a batch of plain inserts (no ops) whose rows all have the same
    columns and distinct, non-null keys: one group, no per-row reduction. ``None`` when it
    does not apply. A record-form batch stays in record form (its group holds
    :class:`Rows`)."""
    if batch.ops is not None:
        return None
    return _uniform_group(batch, pk, strategy)


def insert_group(batch: Batch, pk: Sequence[str],
                 strategy: ConflictStrategy) -> dict[Group, list[Row] | Rows] | None:
    """:func:`plain_group` for change batches whose ops are all ``INSERT`` (a CDC stream of
    inserts): the net effect of distinct keys inserted once each is the rows themselves.
    ``None`` when it does not apply (other ops, repeated keys, ``UNCHANGED`` values)."""
    if batch.ops is None or batch.ops.count(Op.INSERT) != len(batch.ops):
        return None
    return _uniform_group(batch, pk, strategy)


def _uniform_group(batch: Batch, pk: Sequence[str],
                   strategy: ConflictStrategy) -> dict[Group, list[Row] | Rows] | None:
    n = len(batch)
    if not n or not pk:
        return None
    ops = batch.ops
    data: Rows
    if batch.arrow is not None and batch.columns is not None:
        if any(k not in batch.columns for k in pk):
            return None
        data = Rows(names=batch.columns, table=batch.arrow)
        cols = tuple(sorted(batch.columns))
    elif batch.records is not None and batch.columns is not None:
        names: Sequence[str] = batch.columns
        if any(k not in names for k in pk):
            return None
        data = Rows(names=names, records=batch.records)
        cols = tuple(sorted(names))
    else:
        rows = batch.rows
        cols = tuple(sorted(rows[0]))
        if len(set().union(*rows)) != len(cols) or set(map(len, rows)) != {len(cols)}:
            return None  # some row lacks a column: merge semantics need per-row handling
        data = Rows(rows)
    key_cols = [data.column(k) for k in pk]
    if any(None in c for c in key_cols):
        return None  # the per-row path names the row that lacks its key
    if ops is not None and any(any(map(is_, data.column(c), repeat(UNCHANGED))) for c in cols):
        return None  # inserts carry every value; anything else takes the per-row path
    try:
        if len(set(key_cols[0] if len(pk) == 1 else zip(*key_cols, strict=True))) != n:
            return None
    except TypeError:
        return None
    return {(cols, strategy, frozenset(), frozenset(cols)): data}


def _show(pk: Sequence[str], key: Key) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in zip(pk, key, strict=True))


def show_key(pk: Sequence[str], key: Sequence[Any]) -> str:
    """``id=1, region='eu'``: a key for error messages."""
    return _show(pk, tuple(key))
