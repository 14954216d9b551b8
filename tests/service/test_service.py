"""The service on an injected clock: schedules fire, misfires after downtime, dependencies
fan in, retries back off, time limits, cancellation, continuous jobs, graceful stop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from etlsync.service import ManualClock, RunStatus, Service, load_project
from tests.service.conftest import START, MakeProject, memory_job

FAILING = {"source": {"type": "memory", "rows": [{"id": "x"}]},
           "operators": [{"cast": {"types": {"id": "integer"}}}],
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
FOREVER = {"source": {"type": "memory", "rows": [{"id": 1}], "follow": True},
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}


async def statuses(service: Service, job: str | None = None) -> list[tuple[str, str, str]]:
    return [(r.job, r.trigger, r.status.value) for r in reversed(await service.runs(job=job))]


async def until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.01)


async def test_an_interval_job_runs_once_per_fire_with_its_window(
        make_project: MakeProject, clock: ManualClock) -> None:
    root = make_project({"jobs": {"a": {"schedule": {"every": "60s"}}}}, {"a": memory_job()})
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        await clock.advance(59)
        await service.wait_idle()
        assert await service.runs() == []
        for _ in range(3):
            await clock.advance(60)
            await service.wait_idle()
        runs = list(reversed(await service.runs()))
        assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 3
        assert [r.scheduled_for for r in runs] == [START + 60, START + 120, START + 180]
        assert [(r.window_start, r.window_end) for r in runs] == [
            (START, START + 60), (START + 60, START + 120), (START + 120, START + 180)]
        assert all(r.rows_read == 3 and r.rows_written == 3 for r in runs)
    finally:
        await service.stop()


async def test_downtime_misfires_follow_the_policy_across_restarts(
        make_project: MakeProject, clock: ManualClock, tmp_path: Path) -> None:
    root = make_project({"jobs": {"once": {"schedule": {"every": "60s"}, "misfire": "run_once"},
                                  "all": {"schedule": {"every": "60s"}, "misfire": "catch_up"},
                                  "none": {"schedule": {"every": "60s"}, "misfire": "skip"}}},
                        {n: memory_job() for n in ("once", "all", "none")})
    project = load_project(root)
    first = Service(project, clock=clock)
    await first.start()
    await first.stop()  # down from START to START + 250
    await clock.set(START + 250)
    second = Service(project, clock=clock)
    await second.start()
    try:
        await second.wait_idle()
        # +60, +120, +180 are misfires (over the 60 s grace); +240 is on time
        once = sorted(await second.runs(job="once"), key=lambda r: r.scheduled_for or 0)
        assert [(r.scheduled_for, r.window_start, r.window_end) for r in once] == [
            (START + 180, START, START + 180), (START + 240, START + 180, START + 240)]
        assert "misfire (run_once)" in (once[0].note or "") and once[1].note is None
        assert sorted(r.scheduled_for for r in await second.runs(job="all")) == [
            START + 60, START + 120, START + 180, START + 240]
        assert [r.scheduled_for for r in await second.runs(job="none")] == [START + 240]
        await clock.advance(50)  # START + 300
        await second.wait_idle()
        assert sorted(r.scheduled_for or 0 for r in await second.runs(job="none")) == [
            START + 240, START + 300]
        assert all(r.status is RunStatus.SUCCEEDED for r in await second.runs())
    finally:
        await second.stop()


async def test_dependencies_fan_in_and_pass_their_context(
        make_project: MakeProject, clock: ManualClock) -> None:
    report = {"source": {"type": "memory", "rows": [
        {"a": "${upstream.a.run_id}", "b": "${upstream.b.run_id}", "w": "${run.window_end}"}]},
        "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    root = make_project({"jobs": {"a": {"schedule": {"every": "60s"}},
                                  "b": {"schedule": {"every": "120s"}},
                                  "report": {"depends_on": ["a", "b"]},
                                  "audit": {"triggers": [{"type": "job", "job": "report",
                                                          "on": ["any"]}]}}},
                        {"a": memory_job(), "b": memory_job(), "report": report,
                         "audit": memory_job()})
    service = Service(load_project(root), clock=clock)
    seen: list[Any] = []
    service.events.subscribe(lambda e: seen.append(e) if e.kind == "run_started" else None)
    await service.start()
    try:
        await clock.advance(60)  # only a fires: report waits for b
        await service.wait_idle()
        assert await service.runs(job="report") == []
        await clock.advance(60)  # a and b fire: report runs once, then audit
        await service.wait_idle()
        reports = await service.runs(job="report")
        assert len(reports) == 1
        ups = reports[0].context["upstream"]
        a_run = (await service.runs(job="a"))[0]
        b_run = (await service.runs(job="b"))[0]
        assert ups["a"]["run_id"] == a_run.id and ups["b"]["run_id"] == b_run.id
        assert (reports[0].window_start, reports[0].window_end) == (START, START + 120)
        assert [r.trigger for r in await service.runs(job="audit")] == ["job"]
        assert {e.run.job for e in seen} == {"a", "b", "report", "audit"}
    finally:
        await service.stop()


async def test_a_failed_run_is_retried_with_backoff_then_gives_up(
        make_project: MakeProject, clock: ManualClock) -> None:
    root = make_project({"jobs": {"bad": {"retries": {"max_attempts": 2, "backoff": "10s"}}}},
                        {"bad": FAILING})
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        await service.trigger("bad")
        await until(lambda: _count(service, "bad", 2))
        assert (await service.runs(job="bad"))[0].status is RunStatus.QUEUED  # waits 10 s
        await clock.advance(10)
        await until(lambda: _count(service, "bad", 3))
        await clock.advance(20)  # second retry after 20 s
        await service.wait_idle()
        runs = list(reversed(await service.runs(job="bad")))
        assert [(r.trigger, r.attempt, r.status.value) for r in runs] == [
            ("api", 1, "failed"), ("retry", 2, "failed"), ("retry", 3, "failed")]
        assert "cannot convert 'x' to integer" in (runs[0].error or "")
        assert runs[1].retry_of == runs[0].id
    finally:
        await service.stop()


async def _count(service: Service, job: str, n: int) -> bool:
    """``n`` runs of ``job`` exist and all but the newest have finished."""
    runs = list(reversed(await service.runs(job=job)))
    return len(runs) >= n and all(r.status.finished for r in runs[:n - 1])


async def test_a_run_over_its_time_limit_is_stopped_and_recorded(
        make_project: MakeProject, clock: ManualClock) -> None:
    root = make_project({"jobs": {"slow": {"max_run_time": "5m"}}}, {"slow": FOREVER})
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        run = await service.trigger("slow")
        assert run is not None
        await until(lambda: _status_is(service, run.id, RunStatus.RUNNING))
        await clock.advance(299)
        assert (await service.run(run.id)).status is RunStatus.RUNNING  # type: ignore[union-attr]
        await clock.advance(2)
        await service.wait_idle()
        done = await service.run(run.id)
        assert done is not None and done.status is RunStatus.TIMED_OUT
        assert "time limit" in (done.note or "") and done.rows_read == 1
    finally:
        await service.stop()


async def _status_is(service: Service, run_id: str, status: RunStatus) -> bool:
    run = await service.run(run_id)
    return run is not None and run.status is status


async def test_cancel_a_queued_and_a_running_run(make_project: MakeProject,
                                                clock: ManualClock) -> None:
    root = make_project({"queue": {"concurrency": 1}, "jobs": {"a": {}, "b": {}}},
                        {"a": FOREVER, "b": memory_job()})
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        running = await service.trigger("a")
        queued = await service.trigger("b")
        assert running is not None and queued is not None
        await until(lambda: _status_is(service, running.id, RunStatus.RUNNING))
        assert (await service.run(queued.id)).status is RunStatus.QUEUED  # type: ignore[union-attr]
        assert await service.cancel(queued.id)
        assert await service.cancel(running.id)
        await service.wait_idle()
        assert (await service.run(queued.id)).status is RunStatus.CANCELLED  # type: ignore[union-attr]
        done = await service.run(running.id)
        assert done is not None and done.status is RunStatus.CANCELLED and done.rows_read == 1
        assert not await service.cancel(running.id)
    finally:
        await service.stop()


async def test_a_continuous_job_restarts_after_failures_with_growing_backoff(
        make_project: MakeProject, clock: ManualClock) -> None:
    root = make_project({"jobs": {"cdc": {"schedule": {"continuous": True},
                                          "retries": {"backoff": "5s", "max_backoff": "1m"}}}},
                        {"cdc": FAILING})
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        await until(lambda: _count(service, "cdc", 2))
        await clock.advance(5)
        await until(lambda: _count(service, "cdc", 3))
        await clock.advance(9)
        assert len(await service.runs(job="cdc")) == 3  # the third waits 10 s
        await clock.advance(1)
        await until(lambda: _count(service, "cdc", 4))
        runs = list(reversed(await service.runs(job="cdc")))
        assert [r.trigger for r in runs[:3]] == ["continuous", "retry", "retry"]
    finally:
        await service.stop()


async def test_stop_drains_running_jobs_records_them_and_the_next_start_resumes(
        make_project: MakeProject, clock: ManualClock) -> None:
    root = make_project({"jobs": {"cdc": {"schedule": {"continuous": True}}, "batch": {}}},
                        {"cdc": FOREVER, "batch": FOREVER})
    project = load_project(root)
    service = Service(project, clock=clock)
    await service.start()
    batch = await service.trigger("batch")
    assert batch is not None
    await until(lambda: _status_is(service, batch.id, RunStatus.RUNNING))
    await service.stop()
    assert sorted((j, s) for j, _, s in await _all(project, clock)) == [
        ("batch", "stopped"), ("cdc", "stopped")]
    again = Service(project, clock=clock)
    await again.start()
    try:
        await until(lambda: _running(again, {"cdc", "batch"}))
        triggers = {r.job: r.trigger for r in await again.runs(status=["running"])}
        assert triggers == {"cdc": "continuous", "batch": "resume"}
    finally:
        await again.stop()


async def _running(service: Service, jobs: set[str]) -> bool:
    return {r.job for r in await service.runs(status=["running"])} == jobs


async def _all(project: Any, clock: ManualClock) -> list[tuple[str, str, str]]:
    s = Service(project, clock=clock)
    await s.store.open()
    try:
        return [(r.job, r.trigger, r.status.value) for r in await s.store.runs()]
    finally:
        await s.store.close()


async def test_a_second_instance_on_the_same_sqlite_state_is_refused(
        make_project: MakeProject, clock: ManualClock) -> None:
    import pytest

    from etlsync.service import AnotherInstance

    project = load_project(make_project({"jobs": {"a": {}}}, {"a": memory_job()}))
    first = Service(project, clock=clock)
    await first.start()
    try:
        with pytest.raises(AnotherInstance, match="one instance per SQLite file"):
            await Service(project, clock=clock).start()
    finally:
        await first.stop()


async def test_a_daily_cron_runs_once_per_local_day_across_both_dst_changes(
        make_project: MakeProject) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    root = make_project({"jobs": {"nightly": {"schedule": {"cron": "30 2 * * *",
                                                           "timezone": "Europe/Berlin"},
                                              "misfire_grace": "2h"}}},  # hour-long steps
                        {"nightly": memory_job()})
    project = load_project(root)
    seen: list[str] = []
    for day in ((2027, 3, 27), (2027, 10, 30)):  # the nights before the two changes
        clock = ManualClock(datetime(*day, 12, 0, tzinfo=berlin).timestamp())
        service = Service(project, clock=clock)
        await service.start()
        try:
            for _ in range(3 * 24):  # three days, an hour at a time
                await clock.advance(3600)
                await service.wait_idle()
            runs = sorted(await service.runs(), key=lambda r: r.scheduled_for or 0)
            seen += [datetime.fromtimestamp(r.scheduled_for or 0, berlin).strftime("%m-%d %H:%M")
                     for r in runs[-3:]]
            assert all(r.status is RunStatus.SUCCEEDED and r.note is None for r in runs[-3:])
        finally:
            await service.stop()
    # spring: 02:30 does not exist on 03-28 and runs at 03:00; autumn: 02:30 twice, runs once
    assert seen == ["03-28 03:00", "03-29 02:30", "03-30 02:30",
                    "10-31 02:30", "11-01 02:30", "11-02 02:30"]


async def test_warnings_and_errors_the_stages_log_become_the_runs_log_lines(
        make_project: MakeProject, clock: ManualClock) -> None:
    import structlog

    root = make_project({"jobs": {"bad": {}}}, {"bad": FAILING})
    service = Service(load_project(root), clock=clock)
    service.capture_logs()
    await service.start()
    try:
        run = await service.trigger("bad")
        assert run is not None
        await service.wait_idle()
        lines = [(x.level, x.message) for x in await service.logs(run.id)]
    finally:
        await service.stop()
        structlog.reset_defaults()
    assert any(level == "error" and message.startswith("pipeline failed") and
               "cannot convert 'x' to integer" in message for level, message in lines), lines
    assert lines[0][1].startswith("started on ") and lines[-1][1].startswith("failed: ")


async def test_live_events_stream_a_runs_life(make_project: MakeProject,
                                              clock: ManualClock) -> None:
    root = make_project({"jobs": {"a": {}}}, {"a": memory_job()})
    service = Service(load_project(root), clock=clock)
    await service.start()
    kinds: list[tuple[str, str]] = []

    async def read() -> None:
        async for event in service.events.stream():
            kinds.append((event.kind, event.run.status.value if event.run else ""))
            if event.kind == "run_finished":
                return
    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    try:
        await service.trigger("a")
        await asyncio.wait_for(reader, 10)
    finally:
        await service.stop()
    assert kinds[:2] == [("run_queued", "queued"), ("run_started", "running")]
    assert kinds[-1] == ("run_finished", "succeeded")
    assert {k for k, _ in kinds[2:-1]} <= {"run_progress"}
    assert service.events.subscribe(lambda e: None)  # an unsubscribe function
