"""The webhook source (signatures, durable journal, replays applied once) and the HTTP sink
(idempotency keys from positions, retries on 429/5xx)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from etlsync import Pipeline
from etlsync.connectors.http.signatures import sign_stripe
from etlsync.connectors.http.sink import HttpSink
from etlsync.connectors.http.webhook import WebhookSource
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.testing import CollectingSink, MemorySource
from tests.http.fakes.base import Faults, serve

SECRET = "whsec_test_secret"


async def _start(source: WebhookSource, sink: CollectingSink,
                 store: MemoryCheckpointStore) -> tuple[asyncio.Task[Any], str]:
    task = asyncio.create_task(Pipeline(source, [], [sink], name="hooks",
                                        checkpoint_store=store).run())
    for _ in range(200):
        if source.bound_port:
            break
        await asyncio.sleep(0.01)
    return task, f"http://127.0.0.1:{source.bound_port}/webhook"


def _stripe_event(i: int) -> bytes:
    # https://docs.stripe.com/api/events/object
    return json.dumps({"id": f"evt_{i}", "object": "event", "type": "customer.updated",
                       "created": 1700000000 + i, "data": {"object": {"id": f"cus_{i}"}}}).encode()


async def test_stripe_webhooks_verified_persisted_and_replays_applied_once(tmp_path: Path) -> None:
    journal = str(tmp_path / "journal.db")
    source = WebhookSource(journal, secret=SECRET, verify="stripe", port=0, idle_timeout=1.0)
    sink, store = CollectingSink(), MemoryCheckpointStore()
    task, url = await _start(source, sink, store)
    async with aiohttp.ClientSession() as http:
        statuses = []
        for i in (1, 2, 2, 3, 1):  # evt_2 and evt_1 delivered twice (sender retries)
            body = _stripe_event(i)
            async with http.post(url, data=body,
                                 headers={"Stripe-Signature": sign_stripe(SECRET, body)}) as r:
                statuses.append(r.status)
        body = _stripe_event(9)
        async with http.post(url, data=body, headers={
                "Stripe-Signature": sign_stripe("wrong", body)}) as r:
            statuses.append(r.status)
        async with http.post(url, data=body, headers={
                "Stripe-Signature": sign_stripe(SECRET, body, int(time.time()) - 3600)}) as r:
            statuses.append(r.status)
    await task
    assert statuses == [200, 200, 200, 200, 200, 401, 401]
    assert [r["id"] for r in sink.rows] == ["evt_1", "evt_2", "evt_3"]
    assert source.duplicates == 2 and source.rejected == 2


async def test_journal_survives_a_restart_and_resumes_after_the_commit(tmp_path: Path) -> None:
    journal = str(tmp_path / "journal.db")
    store = MemoryCheckpointStore()

    def shopify_headers(body: bytes, wid: str) -> dict[str, str]:
        # https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook
        mac = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
        return {"X-Shopify-Hmac-Sha256": mac, "X-Shopify-Webhook-Id": wid,
                "X-Shopify-Topic": "orders/updated"}

    first = WebhookSource(journal, secret=SECRET, verify="shopify", port=0, idle_timeout=0.8)
    sink1 = CollectingSink()
    task, url = await _start(first, sink1, store)
    async with aiohttp.ClientSession() as http:
        for i in range(5):
            body = json.dumps({"id": i, "updated_at": "2024-01-01"}).encode()
            async with http.post(url, data=body, headers=shopify_headers(body, f"w{i}")) as r:
                assert r.status == 200
    await task
    assert len(sink1.rows) == 5
    second = WebhookSource(journal, secret=SECRET, verify="shopify", port=0, idle_timeout=0.8)
    sink2 = CollectingSink()
    task, url = await _start(second, sink2, store)
    async with aiohttp.ClientSession() as http:
        for i in (4, 5):  # w4 is a late replay of a committed event
            body = json.dumps({"id": i}).encode()
            async with http.post(url, data=body, headers=shopify_headers(body, f"w{i}")) as r:
                assert r.status == 200
    await task
    assert [r["id"] for r in sink2.rows] == [5]


async def test_hubspot_v3_and_generic_hmac(tmp_path: Path) -> None:
    src = WebhookSource(str(tmp_path / "j.db"), secret=SECRET, verify="hubspot_v3", port=0,
                        idle_timeout=0.8)
    sink = CollectingSink()
    task, url = await _start(src, sink, MemoryCheckpointStore())
    # https://developers.hubspot.com/docs/api/webhooks/validating-requests (v3): base64
    # HMAC-SHA256 of method + URI + body + timestamp (ms); HubSpot batches events in arrays
    body = json.dumps([{"eventId": 11, "objectId": 1, "subscriptionType": "contact.creation"},
                       {"eventId": 12, "objectId": 2, "subscriptionType": "contact.creation"}]
                      ).encode()
    stamp = str(int(time.time() * 1000))
    mac = hmac.new(SECRET.encode(), b"POST" + url.encode() + body + stamp.encode(),
                   hashlib.sha256).digest()
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers={
                "X-HubSpot-Signature-v3": base64.b64encode(mac).decode(),
                "X-HubSpot-Request-Timestamp": stamp}) as r:
            assert r.status == 200
        async with http.post(url, data=body, headers={
                "X-HubSpot-Signature-v3": "bad", "X-HubSpot-Request-Timestamp": stamp}) as r:
            assert r.status == 401
    await task
    assert [r["eventId"] for r in sink.rows] == [11, 12]
    plain = WebhookSource(str(tmp_path / "k.db"), secret=SECRET, port=0, idle_timeout=0.5,
                          signature_header="X-Hub-Signature-256", signature_prefix="sha256=")
    sink = CollectingSink()
    task, url = await _start(plain, sink, MemoryCheckpointStore())
    body = b'{"id": "a"}'
    mac_hex = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers={"X-Hub-Signature-256": mac_hex}) as r:
        assert r.status == 200
    await task
    assert sink.rows[0]["id"] == "a"


def _receiver(faults: Faults) -> web.Application:
    """A receiver honouring idempotency keys as Stripe documents them
    (https://docs.stripe.com/api/idempotent_requests): the first result of a key is saved and
    a repeated key returns it without applying the request again."""
    app = web.Application()
    app["applied"] = []
    app["keys"] = {}

    async def ingest(request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key in app["keys"]:
            return web.json_response(app["keys"][key], headers={"Idempotent-Replayed": "true"})
        fault = faults.pick()
        if fault == 429:
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": "0"})
        if fault is not None:
            return web.json_response({"error": "injected"}, status=fault)
        text = await request.text()
        rows = [json.loads(line) for line in text.splitlines()] \
            if request.content_type == "application/x-ndjson" else json.loads(text)
        app["applied"].extend(rows)
        result = {"accepted": len(rows)}
        app["keys"][key] = result
        return web.json_response(result)

    app.router.add_post("/ingest/{stream}", ingest)
    return app


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
async def test_http_sink_retries_and_a_replayed_run_is_recognised(fmt: str) -> None:
    faults = Faults(0.2, statuses=(429, 500, 503), seed=3)
    app = _receiver(faults)
    rows = [{"id": i, "v": f"x{i}"} for i in range(1000)]
    async with serve(app) as url:
        def sink() -> HttpSink:
            return HttpSink({"base_url": url, "retry": {"base_delay": 0.001, "max_attempts": 20}},
                            "ingest/{stream}", format=fmt, max_records=60)

        await Pipeline(MemorySource(rows, 100), [], [sink()], name="p",
                       checkpoint_store=MemoryCheckpointStore()).run()
        # a crash before the checkpoint: the same batches are sent again with the same keys
        await Pipeline(MemorySource(rows, 100), [], [sink()], name="p",
                       checkpoint_store=MemoryCheckpointStore()).run()
    assert faults.injected > 5
    assert [r["id"] for r in app["applied"]] == list(range(1000))
