"""Event-time windows: tumbling, hopping and session windows (for ``Aggregate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etlsync.core.errors import ConfigError
from etlsync.operators._common import duration_us


@dataclass(frozen=True, slots=True)
class Tumbling:
    """Fixed, non-overlapping windows of ``size`` (seconds or ``"5m"``), aligned to the epoch."""

    size: Any

    def micros(self) -> tuple[int, int]:
        size = duration_us(self.size, "window.tumbling")
        if size <= 0:
            raise ConfigError("window.tumbling: the size must be positive")
        return size, size


@dataclass(frozen=True, slots=True)
class Hopping:
    """Windows of ``size`` starting every ``every``: a row belongs to ``size / every`` windows."""

    size: Any
    every: Any

    def micros(self) -> tuple[int, int]:
        size = duration_us(self.size, "window.hopping")
        hop = duration_us(self.every, "window.every")
        if size <= 0 or hop <= 0 or size % hop:
            raise ConfigError(f"window: hopping size {self.size!r} must be a positive multiple "
                              f"of every {self.every!r}")
        return size, hop


@dataclass(frozen=True, slots=True)
class Session:
    """Per key, rows closer than ``gap`` to each other form one window; it closes ``gap``
    after its last row (in event time)."""

    gap: Any

    def micros(self) -> int:
        gap = duration_us(self.gap, "window.session")
        if gap <= 0:
            raise ConfigError("window.session: the gap must be positive")
        return gap


Window = Tumbling | Hopping | Session


def window_from_spec(spec: Any) -> Window | None:
    """A window from a job file's ``window:`` mapping (``{tumbling: 1m}``, ``{hopping: 10m,
    every: 1m}``, ``{session: 30s}``) or a window object."""
    if spec is None or isinstance(spec, Tumbling | Hopping | Session):
        return spec
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"window: expected {{tumbling: SIZE}}, {{hopping: SIZE, every: HOP}} "
                          f"or {{session: GAP}}, got {spec!r}")
    keys = set(spec)
    if keys == {"tumbling"}:
        return Tumbling(spec["tumbling"])
    if keys == {"hopping", "every"}:
        return Hopping(spec["hopping"], spec["every"])
    if keys == {"session"}:
        return Session(spec["session"])
    raise ConfigError(f"window: unknown form {sorted(keys)}; expected tumbling, hopping (with "
                      "every) or session")


class FixedWindows:
    """Assigns rows of tumbling and hopping windows; ``starts(t)`` lists a time's windows."""

    __slots__ = ("hop", "size")

    def __init__(self, window: Tumbling | Hopping) -> None:
        self.size, self.hop = window.micros()

    def starts(self, t: int) -> range:
        last = t - t % self.hop
        return range(last - self.size + self.hop, last + 1, self.hop)


class Sessions:
    """Session windows of each group: ``{group: [[start, last, acc], ...]}`` sorted by start."""

    __slots__ = ("by_group", "gap")

    def __init__(self, gap: int) -> None:
        self.gap = gap
        self.by_group: dict[tuple[Any, ...], list[list[Any]]] = {}

    def place(self, group: tuple[Any, ...], t: int, watermark: int | None, new_acc: Any,
              merge: Any) -> tuple[list[Any] | None, list[int]]:
        """The session row ``t`` of ``group`` joins (``None``: it is late) and the starts of
        sessions merged away (their results are retracted in changelog mode)."""
        sessions = self.by_group.get(group)
        gap = self.gap
        if sessions is None:
            sessions = self.by_group[group] = []
        hit = [s for s in sessions if s[0] - gap < t < s[1] + gap]
        live = [s for s in hit if watermark is None or s[1] + gap > watermark]
        if not live:
            if watermark is not None and t + gap <= watermark:
                return None, []
            session = [t, t, new_acc()]
            sessions.append(session)
            sessions.sort(key=lambda s: s[0])
            return session, []
        target, merged = live[0], []
        old_start = target[0]
        for other in live[1:]:
            merge(target[2], other[2])
            target[0], target[1] = min(target[0], other[0]), max(target[1], other[1])
            merged.append(other[0])
            sessions.remove(other)
        target[0], target[1] = min(target[0], t), max(target[1], t)
        if target[0] != old_start:
            merged.append(old_start)
        return target, merged

    def closed(self, watermark: int | None) -> list[tuple[tuple[Any, ...], list[Any]]]:
        """Remove and return the sessions whose end (last row + gap) the watermark passed
        (``None``: every session)."""
        out: list[tuple[tuple[Any, ...], list[Any]]] = []
        gap = self.gap
        for group in list(self.by_group):
            sessions = self.by_group[group]
            keep = []
            for s in sessions:
                if watermark is None or s[1] + gap <= watermark:
                    out.append((group, s))
                else:
                    keep.append(s)
            if keep:
                self.by_group[group] = keep
            else:
                del self.by_group[group]
        out.sort(key=lambda gs: gs[1][0])
        return out

    def __len__(self) -> int:
        return sum(map(len, self.by_group.values()))
