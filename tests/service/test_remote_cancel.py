"""Two instances on one PostgreSQL state database: a run cancelled through one instance stops
on the instance running it; the other instance never runs the job meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from etlsync.service import ManualClock, RunStatus, Service, load_project
from tests.service.conftest import MakeProject

pytestmark = pytest.mark.integration
FOREVER = {"source": {"type": "memory", "rows": [{"id": 1}], "follow": True},
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}


async def test_cancel_through_another_instance(make_project: MakeProject, clock: ManualClock,
                                               pg_dsn: str, schema: str) -> None:
    root = make_project({"state": {"url": pg_dsn, "schema": schema},
                         "jobs": {"slow": {}}}, {"slow": FOREVER})
    project = load_project(root)
    a = Service(project, clock=clock, instance_id="a")
    b = Service(project, clock=clock, instance_id="b")
    await a.start()
    await b.start()
    try:
        run = await a.trigger("slow")
        assert run is not None
        async with asyncio.timeout(10):
            while (await b.run(run.id)).status is not RunStatus.RUNNING:  # type: ignore[union-attr]
                await asyncio.sleep(0.02)
        other = await b.trigger("slow")  # queued on b: the job's lease is a's
        assert other is not None
        await asyncio.sleep(0.5)
        assert (await b.run(other.id)).status is RunStatus.QUEUED  # type: ignore[union-attr]
        assert await b.cancel(run.id)  # asked through the database
        await a.beat()
        await a.wait_idle()
        done = await a.run(run.id)
        assert done is not None and done.status is RunStatus.CANCELLED
        assert "cancel requested" in (done.note or "")
        async with asyncio.timeout(15):  # now b may take the lease and run its own
            while (await b.run(other.id)).status is not RunStatus.RUNNING:  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
    finally:
        await b.stop()
        await a.stop()
