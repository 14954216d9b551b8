"""Alerts: failure, timeout and recovery through a generic JSON webhook, a Slack-compatible
webhook (local aiohttp servers) and SMTP (a local aiosmtpd server), folded on an injected
clock so a flapping job sends one digest, not a storm."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from etlsync.service import Alert, ManualClock, Service, load_project, open_state
from etlsync.service.alerts import Alerts, EmailChannel, WebhookChannel
from tests.service.conftest import START, MakeProject, memory_job


class Hook:
    """A local webhook receiver recording every JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail_first = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        self.bodies.append(await request.json())
        return web.Response(text="ok")


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    h = Hook()
    app = web.Application()
    app.router.add_post("/hook", h.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    h.url = f"http://127.0.0.1:{port}/hook"
    yield h
    await runner.cleanup()


class Recorder:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Any:
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as s:  # a free port (the controller checks it can connect)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    recorder.port = port  # type: ignore[attr-defined]
    yield recorder
    controller.stop()


async def alerts_for(tmp_path: Path, clock: ManualClock, channels: list[Any],
                     fold: str = "1h") -> tuple[Alerts, Any]:
    from etlsync.service.project import AlertsSpec

    store = open_state(None, tmp_path)
    await store.open()
    return Alerts(AlertsSpec(fold=fold), channels, store, clock, "shop"), store


async def test_generic_and_slack_webhooks_get_their_bodies(hook: Hook, tmp_path: Path,
                                                           clock: ManualClock) -> None:
    alerts, store = await alerts_for(tmp_path, clock, [WebhookChannel(hook.url),
                                                       WebhookChannel(hook.url, slack=True)])
    try:
        hook.fail_first = 1  # a 503 is retried
        await alerts.emit(Alert("failure", "orders", "stage 'sink:pg' failed: boom", "r1"))
    finally:
        await store.close()
    generic, slack = hook.bodies
    assert generic == {"project": "shop", "job": "orders", "kind": "failure",
                       "message": "stage 'sink:pg' failed: boom", "run_id": "r1",
                       "at": "2027-01-15T08:00:00+00:00", "digest": False, "folded": {}}
    assert slack["text"] == "[shop] orders: failure: stage 'sink:pg' failed: boom"
    assert slack["blocks"][0]["type"] == "section"
    assert slack["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "run `r1`" in slack["blocks"][0]["text"]["text"]


async def test_email_alert_through_a_local_smtp_server(smtp: Any, tmp_path: Path,
                                                      clock: ManualClock) -> None:
    channel = EmailChannel("127.0.0.1", smtp.port, sender="etl@example.com",
                           to=["ops@example.com", "dev@example.com"], tls="none")
    alerts, store = await alerts_for(tmp_path, clock, [channel])
    try:
        await alerts.emit(Alert("timeout", "orders", "over its time limit (300s)", "r9"))
    finally:
        await store.close()
    (msg,) = smtp.messages
    assert msg["Subject"] == "etlsync: [shop] orders: timeout"
    assert msg["To"] == "ops@example.com, dev@example.com"
    body = msg.get_payload()
    assert "over its time limit (300s)" in body and "run: r9" in body


async def test_a_flapping_job_sends_one_alert_then_one_digest(hook: Hook, tmp_path: Path,
                                                              clock: ManualClock) -> None:
    alerts, store = await alerts_for(tmp_path, clock, [WebhookChannel(hook.url)], fold="1h")
    try:
        for _ in range(5):  # fail, recover, fail, recover ... every 5 minutes
            await alerts.emit(Alert("failure", "orders", "boom", "rf"))
            await clock.advance(150)
            await alerts.emit(Alert("recovery", "orders", "succeeded again", "rs"))
            await clock.advance(150)
        assert [b["kind"] for b in hook.bodies] == ["failure"]
        await alerts.flush_due()
        assert len(hook.bodies) == 1  # the hour has not passed
        await clock.set(START + 3600)
        await alerts.flush_due()
        digest = hook.bodies[1]
        assert digest["digest"] is True
        assert digest["folded"] == {"failure": 4, "recovery": 5}
        assert digest["message"] == "now ok; latest: succeeded again"
        await alerts.flush_due()
        assert len(hook.bodies) == 2
    finally:
        await store.close()


async def test_a_recovery_is_sent_only_after_an_alert(hook: Hook, tmp_path: Path,
                                                     clock: ManualClock) -> None:
    alerts, store = await alerts_for(tmp_path, clock, [WebhookChannel(hook.url)], fold="0s")
    try:
        await alerts.emit(Alert("recovery", "orders", "succeeded"))
        assert hook.bodies == []
        await alerts.emit(Alert("failure", "orders", "boom"))
        await alerts.emit(Alert("recovery", "orders", "succeeded"))
        await alerts.emit(Alert("recovery", "orders", "succeeded"))
        assert [b["kind"] for b in hook.bodies] == ["failure", "recovery"]
    finally:
        await store.close()


async def test_the_service_alerts_on_failure_and_recovery(hook: Hook, make_project: MakeProject,
                                                         clock: ManualClock,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", hook.url)
    flaky = {"source": {"type": "memory", "rows": [{"id": "${trigger.id}"}]},
             "operators": [{"cast": {"types": {"id": "integer"}}}],
             "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    root = make_project({"alerts": {"fold": "0s", "channels": [{"type": "webhook",
                                                                  "url_env": "TEST_HOOK_URL"}]},
                         "jobs": {"flaky": {}, "fine": {}}},
                        {"flaky": flaky, "fine": memory_job()})
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        await service.trigger("flaky", params={"id": "x"})
        await service.wait_idle()
        await service.trigger("flaky", params={"id": "1"})
        await service.wait_idle()
        await service.trigger("fine")
        await service.wait_idle()
    finally:
        await service.stop()
    assert [(b["job"], b["kind"]) for b in hook.bodies] == [("flaky", "failure"),
                                                            ("flaky", "recovery")]
    assert "cannot convert 'x' to integer" in hook.bodies[0]["message"]
    await asyncio.sleep(0)


async def _running(service: Service, job: str) -> None:
    async with asyncio.timeout(10):
        while not [r for r in await service.runs(job=job, status=["running"])] or \
                not service.executions:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # the first batches go through


async def test_cdc_lag_and_dead_letter_rates_over_their_thresholds_alert(
        hook: Hook, make_project: MakeProject, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", hook.url)
    lagging = {"source": {"type": "tests.service.helpers:LaggingSource", "lag_seconds": 900},
               "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    bad = {"source": {"type": "memory", "follow": True,
                      "rows": [{"id": "x" if i % 4 == 0 else str(i)} for i in range(40)]},
           "operators": [{"cast": {"types": {"id": "integer"}}}],
           "errors": {"on_bad_data": "dead_letter", "dead_letter": {"type": "memory"}},
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    root = make_project({"alerts": {"fold": "0s", "lag": "5m", "dead_letter_rate": 0.1,
                                    "channels": [{"type": "webhook", "url_env": "TEST_HOOK_URL"}]},
                         "jobs": {"cdc": {"schedule": {"continuous": True}}, "dirty": {}}},
                        {"cdc": lagging, "dirty": bad})
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        await service.trigger("dirty")
        await _running(service, "cdc")
        await _running(service, "dirty")
        await service.beat()
    finally:
        await service.stop()
    kinds = {(b["job"], b["kind"]): b["message"] for b in hook.bodies}
    assert kinds[("cdc", "lag")] == "lag 900s over 300s"
    assert kinds[("dirty", "dead_letters")].startswith("10 of 40 rows dead-lettered (25.0%")
