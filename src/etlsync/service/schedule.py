"""When a job runs: cron expressions in a time zone, fixed intervals, and what happens to
the fires missed while no instance was running (the misfire policy).

Cron expressions are evaluated by `cronsim <https://pypi.org/project/cronsim/>`_ in the job's
time zone, with Debian cron's daylight-saving rules: a time that does not exist (the hour
skipped in spring) fires once at the first moment after the jump; a time that occurs twice
(the hour repeated in autumn) fires once, at its first occurrence, for expressions with a
fixed hour; expressions with ``*`` in the hour field fire in both occurrences (they describe
elapsed time). croniter fires a fixed-hour job twice in the repeated hour; cronsim does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from etlsync.core.errors import ConfigError


class Misfire(StrEnum):
    """What a schedule does with fires missed by more than the grace time (downtime)."""

    CATCH_UP = "catch_up"
    """Run once for every missed fire, oldest first (at most ``max_catch_up``)."""
    RUN_ONCE = "run_once"
    """Run once, for the latest missed fire, with a window covering all missed ones."""
    SKIP = "skip"
    """Run none of them; wait for the next fire."""


@dataclass(frozen=True, slots=True)
class Fire:
    """One scheduled run: its logical time and the window of data it covers."""

    scheduled_for: float
    window_start: float
    window_end: float
    misfired: bool = False


class Schedule:
    """A sequence of fire times."""

    def next_after(self, t: float) -> float:
        """The first fire strictly after ``t`` (epoch seconds)."""
        raise NotImplementedError

    def previous(self, t: float) -> float:
        """The last fire strictly before ``t``."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def iter_after(self, t: float) -> Iterator[float]:
        """The fires strictly after ``t``, in order."""
        while True:
            t = self.next_after(t)
            yield t


class Cron(Schedule):
    """A five-field cron expression evaluated in ``tz`` (an IANA name; default UTC)."""

    def __init__(self, expression: str, tz: str = "UTC") -> None:
        try:
            self.zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {tz!r} (an IANA name such as "
                              "Europe/Berlin)") from None
        self.expression, self.tz = expression, tz
        try:
            CronSim(expression, datetime.now(self.zone))
        except CronSimError as exc:
            raise ConfigError(f"invalid cron expression {expression!r}: {exc}") from None

    def _at(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC).astimezone(self.zone)

    def next_after(self, t: float) -> float:
        # cronsim works at minute resolution: start from the minute containing t
        nxt = next(CronSim(self.expression, self._at(t)))
        return nxt.timestamp()

    def previous(self, t: float) -> float:
        return next(CronSim(self.expression, self._at(t), reverse=True)).timestamp()

    def iter_after(self, t: float) -> Iterator[float]:
        for at in CronSim(self.expression, self._at(t)):  # one parse for every fire
            yield at.timestamp()

    def describe(self) -> str:
        return f"cron {self.expression!r} ({self.tz})"


class Interval(Schedule):
    """Every ``seconds``, aligned on ``anchor`` (default: the epoch, so every 15 minutes fires
    at :00, :15, :30, :45 UTC)."""

    def __init__(self, seconds: float, anchor: float = 0.0) -> None:
        if seconds <= 0:
            raise ConfigError("an interval must be longer than 0 seconds")
        self.seconds, self.anchor = seconds, anchor

    def next_after(self, t: float) -> float:
        n = math.floor((t - self.anchor) / self.seconds) + 1
        return self.anchor + n * self.seconds

    def previous(self, t: float) -> float:
        n = math.ceil((t - self.anchor) / self.seconds) - 1
        return self.anchor + n * self.seconds

    def describe(self) -> str:
        return f"every {self.seconds:g}s"


def due_fires(schedule: Schedule, last: float | None, now: float, policy: Misfire,
              grace: float, max_catch_up: int = 100) -> tuple[list[Fire], float]:
    """The fires due at ``now`` for a schedule last handled at ``last``, and the new ``last``.

    A fire up to ``grace`` seconds late runs normally; later ones are misfires and follow
    ``policy``. A schedule never handled (``last is None``) starts now: its past is not a
    misfire.
    """
    if last is None:
        return [], now
    times: list[float] = []
    t = schedule.next_after(last)
    overflow = False
    while t <= now:
        times.append(t)
        if len(times) > max_catch_up + 1:
            times.pop(0)
            overflow = True
        t = schedule.next_after(t)
    if not times:
        return [], last
    on_time = [x for x in times if now - x <= grace]
    missed = [x for x in times if now - x > grace]
    fires: list[Fire] = []
    if missed:
        if policy is Misfire.CATCH_UP:
            keep = missed[-max_catch_up:] if overflow or len(missed) > max_catch_up else missed
            fires += [Fire(x, schedule.previous(x), x, True) for x in keep]
        elif policy is Misfire.RUN_ONCE:
            first = schedule.next_after(last)
            fires.append(Fire(missed[-1], schedule.previous(first), missed[-1], True))
    fires += [Fire(x, schedule.previous(x), x) for x in on_time]
    return fires, times[-1]
