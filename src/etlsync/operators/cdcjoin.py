"""Joining the change streams of two tables into one maintained result."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from etlsync.core.batch import Batch, Op, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError, DataError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Operator, OperatorOutput
from etlsync.operators._common import cap_error, check_columns, check_reject
from etlsync.operators.join import _on

Key = tuple[Any, ...]


class CdcJoin(Operator):
    """Maintain ``left JOIN right ON on`` over the change streams of two tables (a CDC
    source of both, or their snapshots followed by their changes).

    Both tables are kept by primary key (``left_key`` / ``right_key``, default: each
    stream's schema's). Every insert, update, delete or truncate on either side changes the
    joined rows it affects, and only those are emitted on stream ``stream`` as a change
    batch: updates (upserts of the whole joined row) and deletes, keyed by the left key plus
    the right key, or by the left key alone when ``on`` covers the right key (each left row
    joins at most one right row). A keyed sink (``write_mode: upsert``, any sink with the
    ``CHANGES`` capability) keeps the result equal to the join of the two tables.
    ``how="left"`` keeps left rows without a match (right columns ``None``; needs ``on`` to
    cover the right key). Right columns are named ``right_prefix`` + name (the right join
    columns are left out). Both tables are the state (``STATEFUL``), capped at
    ``max_state`` rows.
    """

    capabilities = frozenset({Capability.STATEFUL})

    def __init__(self, left: str, right: str, on: dict[str, str] | Sequence[str] | str, *,
                 left_key: Sequence[str] = (), right_key: Sequence[str] = (),
                 how: str = "inner", right_prefix: str = "", stream: str | None = None,
                 max_state: int = 1_000_000, name: str = "cdc_join") -> None:
        self.name = name
        where = f"cdc join {name!r}"
        check_reject(where, how, ("inner", "left"))
        self.left, self.right, self.how = left, right, how
        self.on = _on(on, where)
        self.keys = [check_columns(where, left_key, "left_key"),
                     check_columns(where, right_key, "right_key")]
        self.right_prefix = right_prefix
        self.stream = stream or f"{left}_{right}"
        self.max_state = max_state
        self.restore_state(None)

    # -- state ---------------------------------------------------------------------------------
    def snapshot_state(self) -> Any:
        return {"v": 1, "keys": self.keys, "left": list(self.rows[0].values()),
                "right": list(self.rows[1].values())}

    def restore_state(self, state: Any) -> None:
        self.rows: tuple[dict[Key, Row], dict[Key, Row]] = ({}, {})
        self.index: tuple[dict[Key, set[Key]], dict[Key, set[Key]]] = ({}, {})
        """Per side: join value -> primary keys."""
        if not state:
            return
        self.keys = [list(k) for k in state["keys"]]
        for side, rows in enumerate((state["left"], state["right"])):
            for r in rows:
                self._put(side, r)

    def extra_metrics(self) -> dict[str, Any]:
        return {"left_rows": len(self.rows[0]), "right_rows": len(self.rows[1])}

    def _join_cols(self, side: int) -> list[str]:
        return list(self.on) if side == 0 else list(self.on.values())

    def _pk(self, side: int, row: Row) -> Key:
        return tuple(row.get(c) for c in self.keys[side])

    def _jv(self, side: int, row: Row) -> Key:
        return tuple(row.get(c) for c in self._join_cols(side))

    def _put(self, side: int, row: Row) -> None:
        pk = self._pk(side, row)
        self._remove(side, pk)
        self.rows[side][pk] = row
        self.index[side].setdefault(self._jv(side, row), set()).add(pk)

    def _remove(self, side: int, pk: Key) -> Row | None:
        old = self.rows[side].pop(pk, None)
        if old is not None:
            jv = self._jv(side, old)
            pks = self.index[side][jv]
            pks.discard(pk)
            if not pks:
                del self.index[side][jv]
        return old

    # -- the joined rows of one left row --------------------------------------------------------
    @property
    def _to_one(self) -> bool:
        return bool(self.keys[1]) and set(self.on.values()) >= set(self.keys[1])

    def out_key(self) -> list[str]:
        if self._to_one:
            return list(self.keys[0])
        return [*self.keys[0], *(self.right_prefix + c for c in self.keys[1])]

    def _joined(self, left: Row, right: Row | None) -> Row:
        out = dict(left)
        skip, p = set(self.on.values()), self.right_prefix
        if right is None:
            for r in self.rows[1].values():  # the right columns, from any right row
                out.update((p + c, None) for c in r if c not in skip)
                break
            return out
        for c, v in right.items():
            if c not in skip:
                if p + c in left:
                    raise DataError(f"cdc join {self.name!r}: column {p + c!r} is on both "
                                    "sides; set right_prefix")
                out[p + c] = v
        return out

    def _outputs(self, lpk: Key) -> dict[Key, Row]:
        left = self.rows[0].get(lpk)
        if left is None:
            return {}
        jv = self._jv(0, left)
        matches = [] if any(v is None for v in jv) else \
            [self.rows[1][rpk] for rpk in self.index[1].get(jv, ())]
        key = self.out_key()
        rows = [self._joined(left, r) for r in matches]
        if not rows and self.how == "left":
            rows = [self._joined(left, None)]
        return {tuple(r.get(c) for c in key): r for r in rows}

    # -- processing ----------------------------------------------------------------------------
    async def process(self, batch: Batch) -> OperatorOutput:
        if batch.stream not in (self.left, self.right):
            return batch
        if not len(batch):
            return None
        side = 0 if batch.stream == self.left else 1
        if not self.keys[side]:
            pk = batch.schema.primary_key if batch.schema is not None else ()
            if not pk:
                raise ConfigError(f"cdc join {self.name!r}: stream {batch.stream!r} has no "
                                  f"primary key in its schema; give "
                                  f"{'left' if side == 0 else 'right'}_key")
            self.keys[side] = list(pk)
        if self.how == "left" and self.keys[1] and not self._to_one:
            raise ConfigError(f"cdc join {self.name!r}: how='left' needs on to cover the right "
                              f"key {self.keys[1]} (each left row joins one right row)")
        rows, ops = [], []
        before = batch.before
        for i, (op, row) in enumerate(batch.iter_changes()):
            old_image = before[i] if before is not None else None
            for o, r in self._apply(side, op, row, old_image):
                ops.append(o)
                rows.append(r)
        size = len(self.rows[0]) + len(self.rows[1])
        if size > self.max_state:
            raise cap_error(f"cdc join {self.name!r}", size, self.max_state, "rows")
        if not rows:
            return None
        schema = Schema(tuple(Column(c, ColumnType.UNKNOWN) for c in rows[0]),
                        tuple(self.out_key()))
        return Batch(rows, self.stream, batch.position, ops, schema=schema)

    def _affected(self, side: int, rows: Iterable[Row | None]) -> set[Key]:
        """The left keys whose joined rows a change of these ``side`` rows can touch."""
        if side == 0:
            return {self._pk(0, r) for r in rows if r is not None}
        out: set[Key] = set()
        for r in rows:
            if r is not None:
                out |= self.index[0].get(self._jv(1, r), set())
        return out

    def _apply(self, side: int, op: Op, row: Row, old_image: Row | None
               ) -> list[tuple[Op, Row]]:
        if op is Op.TRUNCATE:
            lefts = set(self.rows[0])
            before = {k: v for lpk in lefts for k, v in self._outputs(lpk).items()}
            for pk in list(self.rows[side]):
                self._remove(side, pk)
            return self._diff(before, set(self.rows[0]))
        pk = self._pk(side, row)
        if old_image is not None and self._pk(side, old_image) != pk:
            moved = self._apply(side, Op.DELETE, old_image, None)
            return moved + self._apply(side, Op.INSERT, row, None)
        stored = self.rows[side].get(pk)
        lefts = self._affected(side, (stored, row))
        before = {k: v for lpk in lefts for k, v in self._outputs(lpk).items()}
        if op is Op.DELETE:
            self._remove(side, pk)
        else:
            merged = row if stored is None or op is Op.INSERT else {**stored, **row}
            self._put(side, merged)
            lefts |= self._affected(side, (merged,))
        return self._diff(before, lefts)

    def _diff(self, before: dict[Key, Row], lefts: Iterable[Key]) -> list[tuple[Op, Row]]:
        after = {k: v for lpk in lefts for k, v in self._outputs(lpk).items()}
        out: list[tuple[Op, Row]] = [(Op.DELETE, v) for k, v in before.items() if k not in after]
        out += [(Op.UPDATE, v) for k, v in after.items() if before.get(k) != v]
        return out
