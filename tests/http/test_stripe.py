"""The Stripe preset against the Stripe fake: lists, ties on created, updates through events,
the documented request rate kept."""

from __future__ import annotations

import asyncio
import time

import pytest

from etlsync import Pipeline
from etlsync.connectors.http.presets.stripe import StripeSource
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.testing import CollectingSink
from tests.http.fakes.base import serve
from tests.http.fakes.stripe import API_KEY, StripeState, make_app


def by_stream(sink: CollectingSink) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    out: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for b in sink.batches:
        out.setdefault(b.stream, []).extend(b.rows)
    return out


async def test_stripe_lists_ties_and_updates_through_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    now = int(time.time())
    state = StripeState(250, t0=now - 7200)
    app = make_app(state, fault_rate=0.1)
    store = MemoryCheckpointStore()
    async with serve(app) as url:
        def source() -> StripeSource:
            return StripeSource({"env": "STRIPE_API_KEY"}, base_url=url, updates="events",
                                streams=["customers", "charges", "subscriptions"], settle=0,
                                retry={"base_delay": 0.01, "max_attempts": 10})
        sink = CollectingSink()
        await Pipeline(source(), [], [sink], name="s", checkpoint_store=store).run()
        got = by_stream(sink)
        assert len({r["id"] for r in got["customers"]}) == 250 == len(got["customers"])
        assert all(isinstance(r["amount"], int) and r["currency"] for r in got["charges"])
        assert len(got["subscriptions"]) == 10  # status=all: canceled ones too
        assert app["enforcer"].over_budget == 0
        # updates (two of one customer, in order), and a new customer; seen via events
        cus = got["customers"][0]["id"]
        later = int(time.time())
        state.update("customers", cus, later, name="first change")
        state.update("customers", cus, later, name="second change")
        state.create("customers", {"email": "new@example.com", "name": "New"}, created=later)
        await asyncio.sleep(1.1)  # events are read up to the last whole second
        sink2 = CollectingSink()
        await Pipeline(source(), [], [sink2], name="s", checkpoint_store=store).run()
    rows = by_stream(sink2)["customers"]
    assert [r["name"] for r in rows if r["id"] == cus] == ["first change", "second change"]
    assert [r["name"] for r in rows if r["id"] != cus] == ["New"]


async def test_a_bad_key_fails_without_showing_it() -> None:
    state = StripeState(3)
    async with serve(make_app(state)) as url:
        src = StripeSource("sk_test_wrong_key_123", base_url=url, streams=["customers"])
        with pytest.raises(Exception) as info:
            await Pipeline(src, [], [CollectingSink()], name="x").run()
    assert "401" in str(info.value) and "sk_test_wrong_key_123" not in str(info.value)
