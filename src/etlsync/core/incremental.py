"""Cursor watermarks for incremental sync, with the one rule for ties that every source uses.

The rule: a source reads rows whose cursor value is ``>=`` the stored watermark, ordered by
the cursor. The state keeps the watermark and the primary keys of the rows already delivered
*at exactly that cursor value*; rows at the watermark whose key is in that set are skipped.
So rows that share the watermark's cursor value, including ones committed after the last run
read that value, are delivered exactly once; nothing below the watermark is re-read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from etlsync.core.batch import Row
from etlsync.core.codec import dumps
from etlsync.core.errors import DataError


def _key(row: Row, primary_key: Sequence[str]) -> Any:
    if len(primary_key) == 1:
        return row[primary_key[0]]
    return tuple(row[k] for k in primary_key)


@dataclass(slots=True)
class Watermark:
    """The incremental state of one stream: the cursor value reached and the keys seen at it.

    :param cursor_field: the column whose values only grow (e.g. ``updated_at``).
    :param primary_key: the key that tells rows with equal cursor values apart.
    """

    cursor_field: str
    primary_key: tuple[str, ...]
    value: Any = None
    keys_at_value: set[Any] = field(default_factory=set)

    def admit(self, rows: Sequence[Row]) -> list[Row]:
        """Drop rows already delivered (at the watermark, key seen) and advance the state.

        ``rows`` must come ordered by the cursor, starting at or above the watermark.
        Rows with a NULL cursor value are never admitted by an incremental read.
        """
        out: list[Row] = []
        cf, pk = self.cursor_field, self.primary_key
        for row in rows:
            v = row.get(cf)
            if v is None:
                continue
            if self.value is not None and v < self.value:
                raise ValueError(
                    f"incremental read of {cf!r} went backwards: {v!r} after watermark {self.value!r}"
                )
            if v == self.value:
                k = _key(row, pk) if pk else tuple(sorted(row.items()))
                if k in self.keys_at_value:
                    continue
                self.keys_at_value.add(k)
            else:
                self.value = v
                self.keys_at_value = {_key(row, pk) if pk else tuple(sorted(row.items()))}
            out.append(row)
        return out

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot of the state, for checkpoints (values encoded by the store)."""
        return {"cursor": self.value, "keys": sorted(self.keys_at_value, key=repr)}

    @classmethod
    def from_state(
        cls, cursor_field: str, primary_key: Sequence[str], state: dict[str, Any] | None
    ) -> Watermark:
        wm = cls(cursor_field, tuple(primary_key))
        if state:
            wm.value = state.get("cursor")
            wm.keys_at_value = {tuple(k) if isinstance(k, list) else k for k in state.get("keys", [])}
        return wm


def _row_key(row: Row) -> Any:
    """A row's identity when there is no primary key: its items (as JSON if unhashable)."""
    items = tuple(sorted(row.items()))
    try:
        hash(items)
    except TypeError:
        return dumps(items).decode()
    return items


class PassWatermark:
    """Incremental filtering of sources read in any row order (files re-read on every pass,
    APIs that list newest first).

    A row passes when its cursor is above the watermark of the *previous* pass (``base``),
    or equal to it with a primary key not delivered at that value (the
    :class:`~etlsync.core.incremental.Watermark` rule). ``next`` tracks the highest cursor
    value seen in this pass and every key seen at it; it becomes the next pass's base.
    """

    def __init__(self, cursor_field: str, primary_key: Sequence[str],
                 convert: Callable[[Any], Any] | None, state: dict[str, Any] | None) -> None:
        self.cursor_field = cursor_field
        self.primary_key = tuple(primary_key)
        self.convert = convert
        state = state or {}
        self.base = Watermark.from_state(cursor_field, self.primary_key, state.get("base"))
        nxt = state.get("next", state.get("base"))
        self.next = Watermark.from_state(cursor_field, self.primary_key, nxt)

    def admit(self, rows: list[Row]) -> list[Row]:
        out: list[Row] = []
        cf, pk, conv = self.cursor_field, self.primary_key, self.convert
        base_v, base_keys = self.base.value, self.base.keys_at_value
        nxt = self.next
        for row in rows:
            v = row.get(cf)
            if v is None or v == "":
                continue
            if conv is not None:
                try:
                    v = conv(v)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    raise DataError(f"cursor {cf!r}: cannot convert {v!r}: {exc}",
                                    column=cf, value=v, row=row) from exc
            k = _key(row, pk) if pk else _row_key(row)
            if base_v is not None and (v < base_v or (v == base_v and k in base_keys)):
                if v == nxt.value:
                    nxt.keys_at_value.add(k)
                continue
            if nxt.value is None or v > nxt.value:
                nxt.value, nxt.keys_at_value = v, {k}
            elif v == nxt.value:
                nxt.keys_at_value.add(k)
            out.append(row)
        return out

    def state(self) -> dict[str, Any]:
        return {"base": self.base.to_state(), "next": self.next.to_state()}

    def completed_state(self) -> dict[str, Any]:
        """The state that starts the next pass: this pass's ``next`` as the new base."""
        s = self.next.to_state() if self.next.value is not None else self.base.to_state()
        return {"base": s, "next": s}
