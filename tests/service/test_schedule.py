"""Cron and interval schedules on an injected clock: time zones, daylight-saving
transitions, misfire policies after downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etlsync.core.errors import ConfigError
from etlsync.service.schedule import Cron, Interval, Misfire, due_fires

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def local(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).strftime("%m-%d %H:%M%z")


def fires(schedule: Cron | Interval, start: datetime, n: int) -> list[float]:
    out, t = [], start.timestamp()
    for _ in range(n):
        t = schedule.next_after(t)
        out.append(t)
    return out


def test_daily_cron_in_the_skipped_hour_fires_once_right_after_the_spring_jump() -> None:
    cron = Cron("30 2 * * *", "Europe/Berlin")  # 2026-03-29: 02:00 -> 03:00
    got = [local(t, BERLIN) for t in fires(cron, datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3)]
    assert got == ["03-29 03:00+0200", "03-30 02:30+0200", "03-31 02:30+0200"]


def test_daily_cron_in_the_repeated_hour_fires_once_in_autumn() -> None:
    cron = Cron("30 2 * * *", "Europe/Berlin")  # 2026-10-25: 03:00 -> 02:00
    got = fires(cron, datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3)
    assert [local(t, BERLIN) for t in got] == ["10-25 02:30+0200", "10-26 02:30+0100",
                                               "10-27 02:30+0100"]
    assert got[1] - got[0] == 25 * 3600  # that day is 25 hours long


def test_hourly_cron_fires_in_both_occurrences_of_the_repeated_hour() -> None:
    cron = Cron("0 * * * *", "America/New_York")  # 2026-11-01: 02:00 EDT -> 01:00 EST
    got = fires(cron, datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK), 4)
    assert [local(t, NEW_YORK) for t in got] == ["11-01 01:00-0400", "11-01 01:00-0500",
                                                 "11-01 02:00-0500", "11-01 03:00-0500"]
    assert all(b - a == 3600 for a, b in pairwise(got))


def test_hourly_cron_skips_the_missing_hour_without_firing_twice() -> None:
    cron = Cron("0 * * * *", "America/New_York")  # 2026-03-08: 02:00 EST -> 03:00 EDT
    got = fires(cron, datetime(2026, 3, 8, 0, 30, tzinfo=NEW_YORK), 3)
    assert [local(t, NEW_YORK) for t in got] == ["03-08 01:00-0500", "03-08 03:00-0400",
                                                 "03-08 04:00-0400"]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["*/7 * * * *", "0 2 * * *", "30 1,2,3 * * *", "15 */3 * * 0",
                        "0 0 1 * *"]),
       st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "UTC"]),
       st.integers(min_value=0, max_value=364))
def test_fires_strictly_increase_and_match_the_expression_locally(expr: str, tz: str,
                                                                  day: int) -> None:
    cron = Cron(expr, tz)
    zone = ZoneInfo(tz)
    start = datetime(2026, 1, 1, tzinfo=zone) + timedelta(days=day)
    got = fires(cron, start, 40)
    assert all(b > a for a, b in pairwise(got))
    minute = expr.split()[0]
    for t in got:
        at = datetime.fromtimestamp(t, UTC).astimezone(zone)
        hour_before = datetime.fromtimestamp(t - 3600, UTC).astimezone(zone)
        if minute.isdigit() and at.utcoffset() == hour_before.utcoffset():
            assert at.minute == int(minute)  # (a time in the spring gap fires right after it)


def test_interval_aligns_on_the_epoch_and_previous_is_strict() -> None:
    every = Interval(900)
    assert every.next_after(1_800_000_000.0) == 1_800_000_900.0
    assert every.next_after(1_800_000_001.0) == 1_800_000_900.0
    assert every.previous(1_800_000_000.0) == 1_799_999_100.0


def test_bad_expressions_and_zones_are_named() -> None:
    with pytest.raises(ConfigError, match="invalid cron expression '61 \\* \\* \\* \\*'"):
        Cron("61 * * * *")
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        Cron("* * * * *", "Mars/Olympus")


T0 = 1_800_000_000.0  # a multiple of 60


def test_a_new_schedule_starts_now_and_does_not_run_its_past() -> None:
    got, last = due_fires(Interval(60), None, T0, Misfire.CATCH_UP, 30)
    assert got == [] and last == T0


def test_on_time_fires_run_with_their_window() -> None:
    got, last = due_fires(Interval(60), T0, T0 + 61, Misfire.SKIP, 30)
    assert [(f.scheduled_for, f.window_start, f.window_end, f.misfired) for f in got] == \
        [(T0 + 60, T0, T0 + 60, False)]
    assert last == T0 + 60


@pytest.mark.parametrize(("policy", "expected"), [
    (Misfire.CATCH_UP, [(T0 + 60, T0, True), (T0 + 120, T0 + 60, True),
                        (T0 + 180, T0 + 120, True), (T0 + 240, T0 + 180, False)]),
    (Misfire.RUN_ONCE, [(T0 + 180, T0, True), (T0 + 240, T0 + 180, False)]),
    (Misfire.SKIP, [(T0 + 240, T0 + 180, False)]),
])
def test_misfire_policies_after_downtime(policy: Misfire,
                                         expected: list[tuple[float, float, bool]]) -> None:
    # down from T0 to T0+250: fires at +60, +120, +180 are more than 30 s late
    got, last = due_fires(Interval(60), T0, T0 + 250, policy, 30)
    assert [(f.scheduled_for, f.window_start, f.misfired) for f in got] == expected
    assert last == T0 + 240


def test_catch_up_keeps_the_most_recent_missed_fires_up_to_its_limit() -> None:
    got, last = due_fires(Interval(60), T0, T0 + 60 * 1000 + 5, Misfire.CATCH_UP, 1, 10)
    assert len(got) == 10 and got[-1].scheduled_for == T0 + 60 * 1000 == last
    assert [f.scheduled_for for f in got] == [T0 + 60 * k for k in range(991, 1001)]


def test_misfires_across_a_dst_night_in_local_time() -> None:
    cron = Cron("30 2 * * *", "Europe/Berlin")
    last = datetime(2026, 3, 27, 2, 30, tzinfo=BERLIN).timestamp()
    now = datetime(2026, 3, 31, 12, 0, tzinfo=BERLIN).timestamp()
    got, _ = due_fires(cron, last, now, Misfire.CATCH_UP, 60)
    assert [local(f.scheduled_for, BERLIN) for f in got] == [
        "03-28 02:30+0100", "03-29 03:00+0200", "03-30 02:30+0200", "03-31 02:30+0200"]
    assert got[1].window_end - got[1].window_start == 23.5 * 3600  # 02:30 CET to 03:00 CEST
