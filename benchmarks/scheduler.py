"""The scheduler under load: 1,000 jobs firing every minute, each a small pipeline.

Side by side in one run, each variant in its own process, on real minute boundaries:

- ``scheduler_etlsync``: ``etlsync serve``'s :class:`Service` with ``--jobs`` jobs on
  ``cron: "* * * * *"``, each ``memory`` (``--rows`` rows) -> ``collect``, history in the
  default SQLite state database, queue concurrency = the number of jobs. Trigger-to-start is
  the time from a run's scheduled minute to its ``run_started`` event (queued and leased in
  the state database, job built, checkpoint read, history row says ``running``).
- ``apscheduler``: APScheduler 3 (``AsyncIOScheduler``, ``CronTrigger``, the field's in-process
  scheduler; it keeps no run history) starting the same pipelines; trigger-to-start is the
  scheduled minute to the job function's start.
- ``asyncio_floor``: one ``loop.call_at`` per job at the minute, starting the same pipeline:
  what an event loop costs at all.

``p50_ms`` / ``p99_ms``: trigger-to-start over every run of ``--minutes`` fires;
``rss_per_job_kb``: resident memory added per idle job (after loading and starting, before the
first fire), ``(RSS with the jobs - RSS before) / jobs``. ``rows``: runs started.

    flock /tmp/etlsync-bench.lock python3 benchmarks/scheduler.py --jobs 1000 --minutes 2 --json
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_result, parse_args, report, run_variants

VARIANTS = ["scheduler_etlsync", "apscheduler", "asyncio_floor"]


def rss_kb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def next_minute(now: float) -> float:
    return (int(now) // 60 + 1) * 60.0


def small_pipeline(rows: int) -> Any:
    from etlsync import Pipeline
    from etlsync.core.checkpoint import MemoryCheckpointStore
    from etlsync.testing import CollectingSink, MemorySource

    return Pipeline(MemorySource([{"id": i} for i in range(rows)]), [], CollectingSink(),
                    checkpoint_store=MemoryCheckpointStore(), gc_threshold=None)


async def etlsync_variant(jobs: int, minutes: int, rows: int) -> dict[str, Any]:
    import yaml

    from etlsync.service import Service, load_project

    root = Path(tempfile.mkdtemp(prefix="etlsync-bench-"))
    (root / "jobs").mkdir()
    job = {"source": {"type": "memory", "rows": [{"id": i} for i in range(rows)]},
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    for i in range(jobs):
        (root / "jobs" / f"j{i:04}.yaml").write_text(yaml.safe_dump(job))
    (root / "etlsync-project.yaml").write_text(yaml.safe_dump({
        "queue": {"concurrency": jobs},
        "jobs": {f"j{i:04}": {"schedule": {"cron": "* * * * *"}} for i in range(jobs)}}))
    before = rss_kb()
    service = Service(load_project(root))
    latencies: list[float] = []
    service.events.subscribe(lambda e: latencies.append(e.at - e.run.scheduled_for)
                             if e.kind == "run_started" and e.run and e.run.scheduled_for
                             else None)
    await service.start()
    idle = (rss_kb() - before) / jobs
    first = next_minute(time.time())
    await asyncio.sleep(first + 60 * (minutes - 1) - time.time() + 0.01)
    async with asyncio.timeout(120):
        while len(latencies) < jobs * minutes or service.executions:
            await asyncio.sleep(0.05)
    await service.stop()
    return {"latencies": latencies, "rss_per_job_kb": idle}


async def apscheduler_variant(jobs: int, minutes: int, rows: int) -> dict[str, Any]:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    latencies: list[float] = []
    done = 0

    async def job(_: int) -> None:
        nonlocal done
        started = time.time()
        latencies.append(started - (int(started) // 60) * 60.0)
        await small_pipeline(rows).run(handle_signals=False)
        done += 1

    before = rss_kb()
    scheduler = AsyncIOScheduler()
    for i in range(jobs):
        scheduler.add_job(job, CronTrigger(minute="*"), args=[i], id=f"j{i}",
                          max_instances=1, misfire_grace_time=30, coalesce=True)
    scheduler.start()
    idle = (rss_kb() - before) / jobs
    first = next_minute(time.time())
    await asyncio.sleep(first + 60 * (minutes - 1) - time.time() + 0.01)
    async with asyncio.timeout(120):
        while done < jobs * minutes:
            await asyncio.sleep(0.05)
    scheduler.shutdown(wait=False)
    return {"latencies": latencies, "rss_per_job_kb": idle}


async def floor_variant(jobs: int, minutes: int, rows: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    tasks: set[asyncio.Task[Any]] = set()
    at = next_minute(time.time())

    def start(minute: float) -> None:
        latencies.append(time.time() - minute)
        task = loop.create_task(small_pipeline(rows).run(handle_signals=False))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    before = rss_kb()
    for m in range(minutes):
        for _ in range(jobs):
            loop.call_at(loop.time() + (at + 60 * m - time.time()), start, at + 60 * m)
    idle = (rss_kb() - before) / jobs
    await asyncio.sleep(at + 60 * (minutes - 1) - time.time() + 0.01)
    async with asyncio.timeout(120):
        while len(latencies) < jobs * minutes or tasks:
            await asyncio.sleep(0.05)
    return {"latencies": latencies, "rss_per_job_kb": idle}


def child(variant: str, jobs: int, minutes: int, rows: int) -> None:
    fn = {"scheduler_etlsync": etlsync_variant, "apscheduler": apscheduler_variant,
          "asyncio_floor": floor_variant}[variant]
    t0 = time.perf_counter()
    out = asyncio.run(fn(jobs, minutes, rows))
    seconds = time.perf_counter() - t0
    ms = [x * 1000 for x in out["latencies"]]
    child_result(variant, len(ms), seconds, jobs=jobs, minutes=minutes, rows_per_run=rows,
                 p50_ms=round(percentile(ms, 0.5), 2), p99_ms=round(percentile(ms, 0.99), 2),
                 max_ms=round(max(ms), 2), mean_ms=round(statistics.fmean(ms), 2),
                 rss_per_job_kb=round(out["rss_per_job_kb"], 2))


def options(p: Any) -> None:
    p.add_argument("--jobs", type=int, default=1000, help="jobs firing every minute")
    p.add_argument("--minutes", type=int, default=2, help="fires to measure")


def main() -> None:
    args = parse_args(__doc__ or "", 10, options)
    args.repeat = 1  # each round takes minutes of wall clock
    if args.variant:
        child(args.variant, args.jobs, args.minutes, args.rows)
        return
    results = run_variants(__file__, VARIANTS, args.rows, 1,
                           extra_args=["--jobs", str(args.jobs), "--minutes", str(args.minutes)])
    ours = results.get("scheduler_etlsync", {})
    for base in ("apscheduler", "asyncio_floor"):
        other = results.get(base, {})
        if ours.get("p99_ms") and other.get("p99_ms"):
            ours[f"ratio_p99_vs_{base}"] = round(other["p99_ms"] / ours["p99_ms"], 3)
        if ours.get("rss_per_job_kb") and other.get("rss_per_job_kb"):
            ours[f"ratio_rss_per_job_vs_{base}"] = round(
                other["rss_per_job_kb"] / ours["rss_per_job_kb"], 3)
    report(results, args.json)


if __name__ == "__main__":
    main()
