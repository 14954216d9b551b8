"""Incremental state of an API resource: etlsync's watermark rule, for pages in any order,
with a lookback window.

APIs list newest first (Stripe) or oldest first (HubSpot search), so the rule is the one
for sources read in any order (:class:`etlsync.core.incremental.PassWatermark`): a pass
admits records whose cursor is above the previous pass's watermark, or equal to it with a
key not delivered at that value; the highest value seen and its keys become the next pass's
watermark. With ``lag`` (a lookback window) the request asks for records from ``watermark -
lag`` on, so records that became visible late are read again; the state remembers the
``(key, cursor)`` pairs delivered inside the window (at most ``lag_keys``), so a record read
again unchanged is not delivered twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from etlsync.core.batch import Row
from etlsync.core.incremental import PassWatermark, _key


def parse_time(value: str) -> dt.datetime | None:
    """An ISO 8601 timestamp (``Z`` accepted), or ``None`` if ``value`` is not one."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def shift(value: Any, seconds: float) -> Any:
    """``value`` moved by ``seconds`` (numbers by that many units), in its own form."""
    if not seconds or value is None:
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        out = value + seconds
        return int(out) if isinstance(value, int) and float(seconds).is_integer() else out
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(seconds=seconds)
    if isinstance(value, str):
        parsed = parse_time(value)
        if parsed is None:
            return value
        moved = parsed + dt.timedelta(seconds=seconds)
        text = moved.isoformat()
        if value.endswith("Z"):
            text = moved.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return text
    return value


def as_param(value: Any, form: str) -> Any:
    """The cursor value as a request parameter: as is, as epoch seconds, or as ISO 8601."""
    if value is None or form == "same":
        return value
    if form == "epoch_seconds":
        if isinstance(value, str):
            parsed = parse_time(value)
            return int(parsed.timestamp()) if parsed is not None else value
        if isinstance(value, dt.datetime):
            return int(value.timestamp())
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


class ApiWatermark:
    """The incremental state of one resource during a pass.

    :param state: ``{"base": ..., "next": ..., "recent": [[key, cursor], ...]}`` or ``None``.
    """

    def __init__(self, cursor_field: str, primary_key: Sequence[str], state: dict[str, Any] | None,
                 *, initial_value: Any = None, lag: float = 0.0, lag_keys: int = 10_000) -> None:
        state = dict(state or {})
        if initial_value is not None and not state.get("base"):
            state["base"] = {"cursor": initial_value, "keys": []}
        self.pass_wm = PassWatermark(cursor_field, primary_key, None, state)
        self.cursor_field = cursor_field
        self.primary_key = tuple(primary_key)
        self.lag = lag
        self.lag_keys = lag_keys
        self.recent: set[tuple[Any, Any]] = {(k, v) for k, v in state.get("recent", [])}

    @property
    def base(self) -> Any:
        """The watermark this pass started from."""
        return self.pass_wm.base.value

    def start_value(self) -> Any:
        """What the request asks for: the watermark minus the lookback window."""
        return shift(self.base, -self.lag)

    def admit(self, rows: list[Row]) -> list[Row]:
        """The rows not delivered before (the state advances)."""
        if not self.lag or self.base is None:
            admitted = self.pass_wm.admit(rows)
            if self.lag:
                self._remember(admitted)
            return admitted
        low = self.start_value()
        base, cf, pk = self.base, self.cursor_field, self.primary_key
        out: list[Row] = []
        for row in rows:
            v = row.get(cf)
            if v is None:
                continue
            if v < base:
                if v < low:
                    continue
                pair = (_key(row, pk), v)
                if pair in self.recent:
                    continue
                self.recent.add(pair)
                out.append(row)
            else:
                kept = self.pass_wm.admit([row])
                self._remember(kept)
                out.extend(kept)
        return out

    def _remember(self, rows: list[Row]) -> None:
        cf, pk = self.cursor_field, self.primary_key
        for row in rows:
            self.recent.add((_key(row, pk), row.get(cf)))

    def _recent_state(self, watermark: Any) -> list[list[Any]]:
        if not self.lag:
            return []
        low = shift(watermark, -self.lag)
        kept = [(k, v) for k, v in self.recent if low is None or v >= low]
        kept.sort(key=lambda kv: (kv[1], repr(kv[0])))
        return [[k, v] for k, v in kept[-self.lag_keys:]] if self.lag_keys else []

    def state(self) -> dict[str, Any]:
        """The state in the middle of a pass."""
        now = self.pass_wm.state()
        if self.lag:
            now["recent"] = self._recent_state(self.pass_wm.next.value)
        return now

    def completed_state(self) -> dict[str, Any]:
        """The state that starts the next pass."""
        done = self.pass_wm.completed_state()
        if self.lag:
            done["recent"] = self._recent_state(done["base"].get("cursor"))
        return done
