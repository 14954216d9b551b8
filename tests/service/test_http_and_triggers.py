"""Triggers: the authenticated HTTP API (127.0.0.1 by default), files arriving in a
directory, messages from an etlsync source (the seam for Kafka and RabbitMQ, tested with a
memory source)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from etlsync.core.errors import ConfigError
from etlsync.service import ManualClock, RunStatus, Service, load_project
from tests.service.conftest import MakeProject, memory_job

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ETLSYNC_SERVE_TOKEN", TOKEN)
    return TOKEN


async def test_http_trigger_needs_the_token_and_binds_loopback(
        make_project: MakeProject, clock: ManualClock, token: str) -> None:
    echo = {"source": {"type": "memory", "rows": [{"day": "${trigger.day}"}]},
            "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    root = make_project({"http": {"listen": "127.0.0.1:0"}, "jobs": {"echo": {}}},
                        {"echo": echo})
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        assert service.http.host == "127.0.0.1"
        base = f"http://127.0.0.1:{service.http.port}"
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.post(f"{base}/jobs/echo/runs") as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
            async with http.post(f"{base}/jobs/echo/runs",
                                 headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}) as r:
                assert r.status == 401
            async with http.post(f"{base}/jobs/nope/runs", headers=auth) as r:
                assert r.status == 404
            key = {**auth, "Idempotency-Key": "order-42"}
            async with http.post(f"{base}/jobs/echo/runs", headers=key,
                                 json={"params": {"day": "2027-01-14"}, "priority": 3}) as r:
                assert r.status == 202
                run = (await r.json())["run"]
            async with http.post(f"{base}/jobs/echo/runs", headers=key, json={}) as r:
                again = await r.json()
                assert r.status == 200 and again["duplicate"] and again["run"]["id"] == run["id"]
            await service.wait_idle()
            async with http.get(f"{base}/runs/{run['id']}", headers=auth) as r:
                shown = await r.json()
            async with http.get(f"{base}/jobs", headers=auth) as r:
                jobs = (await r.json())["jobs"]
            async with http.get(f"{base}/runs?job=echo", headers=auth) as r:
                listed = (await r.json())["runs"]
    finally:
        await service.stop()
    assert shown["run"]["status"] == "succeeded" and shown["run"]["priority"] == 3
    assert shown["run"]["context"] == {"day": "2027-01-14"}
    assert any("succeeded" in line["message"] for line in shown["logs"])
    assert [j["name"] for j in jobs] == ["echo"] and len(listed) == 1


async def test_http_without_a_token_does_not_start(make_project: MakeProject,
                                                  clock: ManualClock,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETLSYNC_SERVE_TOKEN", raising=False)
    root = make_project({"http": {}, "jobs": {"a": {}}}, {"a": memory_job()})
    service = Service(load_project(root), clock=clock)
    with pytest.raises(ConfigError, match="ETLSYNC_SERVE_TOKEN is not set"):
        await service.start()
    await service.stop()


async def test_files_arriving_in_a_directory_trigger_one_run_each(
        make_project: MakeProject, clock: ManualClock) -> None:
    job = {"source": {"type": "csv", "path": "${trigger.path}"},
           "sink": {"type": "sqlite", "path": "../out/files.db", "table": "rows"}}
    root = make_project({"jobs": {"load": {"triggers": [
        {"type": "files", "path": "incoming", "pattern": "*.csv"}]}}}, {"load": job})
    incoming = root / "incoming"
    incoming.mkdir()
    (incoming / "first.csv").write_text("id,v\n1,a\n")
    (incoming / "ignored.txt").write_text("x")
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        await service.wait_idle()
        assert [r.context["trigger"]["name"] for r in await service.runs()] == ["first.csv"]
        tmp = root / "second.tmp"
        tmp.write_text("id,v\n2,b\n3,c\n")
        tmp.rename(incoming / "second.csv")  # written elsewhere, renamed in
        async with asyncio.timeout(20):
            while len(await service.runs()) < 2:
                await asyncio.sleep(0.05)
        await service.wait_idle()
    finally:
        await service.stop()
    runs = {r.context["trigger"]["name"]: r for r in await _runs(root, clock)}
    assert sorted(runs) == ["first.csv", "second.csv"]
    assert runs["second.csv"].rows_written == 2 and runs["first.csv"].rows_written == 1
    assert all(r.status is RunStatus.SUCCEEDED for r in runs.values())
    # a restart does not load the same files again
    again = Service(load_project(root), clock=clock, watch=False)
    await again.start()
    await again.wait_idle()
    assert len(await again.runs()) == 2
    await again.stop()


async def _runs(root: Path, clock: ManualClock) -> list:  # type: ignore[type-arg]
    s = Service(load_project(root), clock=clock)
    await s.store.open()
    try:
        return await s.store.runs()
    finally:
        await s.store.close()


async def test_messages_from_an_etlsync_source_trigger_runs_once_each(
        make_project: MakeProject, clock: ManualClock) -> None:
    job = {"source": {"type": "memory", "rows": [{"order": "${trigger.order_id}"}]},
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    messages = [{"order_id": i, "kind": "paid"} for i in (101, 102, 103)]
    root = make_project({"jobs": {"ship": {"triggers": [
        {"type": "message", "source": {"type": "memory", "rows": messages,
                                       "batch_size": 2}}]}}}, {"ship": job})
    project = load_project(root)
    service = Service(project, clock=clock)
    await service.start()
    try:
        async with asyncio.timeout(10):
            while len(await service.runs()) < 3:
                await asyncio.sleep(0.02)
        await service.wait_idle()
    finally:
        await service.stop()
    # the memory source ends and is restarted: redelivered messages queue nothing new
    again = Service(project, clock=clock)
    await again.start()
    await asyncio.sleep(0.3)
    await again.wait_idle()
    runs = await again.runs()
    await again.stop()
    assert len(runs) == 3
    assert sorted(r.context["trigger"]["order_id"] for r in runs) == [101, 102, 103]
    assert all(r.trigger == "message" and r.status is RunStatus.SUCCEEDED for r in runs)


def test_the_api_binds_loopback_unless_told_otherwise() -> None:
    from etlsync.service.http import parse_listen
    from etlsync.service.project import HttpSpec

    assert parse_listen(HttpSpec().listen) == ("127.0.0.1", 8765)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_listen("8765")
