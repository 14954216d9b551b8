"""Stripe: customers, charges, invoices, subscriptions, payment intents and events.

Lists are paged with ``limit`` (at most 100), ``starting_after`` = the last object's ``id``
and ``has_more``; they run newest first. The first pass reads the lists (incremental by
``created`` through ``created[gte]``, with etlsync's tie rule). With ``updates: events`` a
later pass reads ``/v1/events`` instead, in time windows from where the last pass ended
(``created[gte]`` / ``created[lt]``, narrowed when a window holds more than
``max_window_events``), each window sorted oldest first, and emits every event's
``data.object`` into the object's stream: updates land in order in an upsert target.
Amounts stay integers in the smallest currency unit, beside their ``currency``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from etlsync.connectors.http.rest import RestSource
from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.schema import Schema
from etlsync.core.stages import Source

# stream -> (path, object type in events, extra list params)
STREAMS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "customers": ("v1/customers", "customer", {}),
    "charges": ("v1/charges", "charge", {}),
    "invoices": ("v1/invoices", "invoice", {}),
    "subscriptions": ("v1/subscriptions", "subscription", {"status": "all"}),
    "payment_intents": ("v1/payment_intents", "payment_intent", {}),
    "events": ("v1/events", "event", {}),
}
_MONEY = {"amount": "integer", "currency": "string"}
SCHEMAS: dict[str, dict[str, str]] = {
    "customers": {"id": "string", "object": "string", "created": "integer", "email": "string",
                  "name": "string", "balance": "integer", "currency": "string",
                  "metadata": "json", "livemode": "boolean"},
    "charges": {"id": "string", "object": "string", "created": "integer", **_MONEY,
                "amount_captured": "integer", "amount_refunded": "integer",
                "customer": "string", "status": "string", "paid": "boolean",
                "payment_intent": "string", "metadata": "json", "livemode": "boolean"},
    "invoices": {"id": "string", "object": "string", "created": "integer",
                 "customer": "string", "currency": "string", "amount_due": "integer",
                 "amount_paid": "integer", "amount_remaining": "integer", "total": "integer",
                 "status": "string", "subscription": "string", "livemode": "boolean"},
    "subscriptions": {"id": "string", "object": "string", "created": "integer",
                      "customer": "string", "status": "string", "currency": "string",
                      "current_period_start": "integer", "current_period_end": "integer",
                      "items": "json", "livemode": "boolean"},
    "payment_intents": {"id": "string", "object": "string", "created": "integer", **_MONEY,
                        "amount_received": "integer", "customer": "string",
                        "status": "string", "livemode": "boolean"},
    "events": {"id": "string", "object": "string", "created": "integer", "type": "string",
               "data": "json", "api_version": "string", "livemode": "boolean"},
}


class StripeSource(Source):
    """A Stripe account's objects (see the module docstring).

    :param api_key: a secret or restricted key (``{env: STRIPE_API_KEY}``).
    :param updates: ``created`` (new objects only) or ``events`` (updates too, after the
        first pass).
    :param start_date: epoch seconds: read objects created since then.
    :param base_url: ``https://api.stripe.com`` (another for tests and proxies).
    """

    name = "stripe"
    capabilities = frozenset({Capability.PASSES})

    def __init__(self, api_key: Any, *, streams: Sequence[str] = tuple(STREAMS),
                 sync_mode: str = "incremental", updates: str = "created",
                 start_date: int | None = None, page_size: int = 100,
                 base_url: str = "https://api.stripe.com", window: float = 86400.0,
                 max_window_events: int = 10_000, settle: float = 5.0,
                 budget: dict[str, Any] | None = None, retry: dict[str, Any] | None = None
                 ) -> None:
        bad = [s for s in streams if s not in STREAMS]
        if bad:
            raise ConfigError(f"streams: unknown Stripe stream(s) {bad}; expected "
                              f"{', '.join(STREAMS)}")
        if updates not in ("created", "events"):
            raise ConfigError("updates: created or events")
        if not 1 <= page_size <= 100:
            raise ConfigError("page_size: Stripe lists take limit 1..100")
        self.streams, self.sync_mode, self.updates = list(streams), sync_mode, updates
        self.window, self.max_window_events, self.settle = window, max_window_events, settle
        # Stripe's documented default is 100 read requests/s in live mode, 25 in test mode
        client: dict[str, Any] = {
            "base_url": base_url, "auth": {"type": "bearer", "token": api_key},
            "budget": budget or {"call_limit": 25, "period": 1.0},
            "paginator": {"type": "cursor", "record_cursor_field": "id",
                          "cursor_param": "starting_after", "has_more_path": "has_more"}}
        if retry:
            client["retry"] = retry
        resources = []
        for s in self.streams:
            path, _, extra = STREAMS[s]
            endpoint: dict[str, Any] = {"path": path, "data_selector": "data",
                                        "params": {"limit": page_size, **extra}}
            if sync_mode == "incremental":
                endpoint["incremental"] = {"cursor_path": "created", "start_param": "created[gte]",
                                           "initial_value": start_date}
            resources.append({"name": s, "primary_key": "id", "endpoint": endpoint,
                              "schema": SCHEMAS[s]})
        self.lists = RestSource(client, resources)
        self.page_size = page_size

    def extra_metrics(self) -> dict[str, Any]:
        return self.lists.extra_metrics()

    async def discover(self) -> dict[str, Schema]:
        return await self.lists.discover()

    def next_pass(self, position: Any) -> Any | None:
        if self.sync_mode != "incremental" or not isinstance(position, dict):
            return None
        nxt = self.lists.next_pass(position.get("lists"))
        if self.updates == "events":
            return {"phase": "events", "from": position.get("from"), "lists": nxt}
        return {"phase": "lists", "lists": nxt}

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        pos = dict(position) if isinstance(position, dict) else {}
        start = pos.get("from")
        if pos.get("phase") == "events" and start is not None:
            async for batch in self._events(int(start), pos.get("lists")):
                yield batch
            return
        began = pos.get("began") or int(time.time())
        async for batch in self.lists.read(pos.get("lists")):
            batch.position = None if batch.position is None else \
                {"phase": "lists", "lists": batch.position, "began": began, "from": began}
            yield batch

    async def _events(self, start: int, lists: Any) -> AsyncIterator[Batch]:
        """Object versions from the events since ``start``, oldest first, by window."""
        types = {STREAMS[s][1]: s for s in self.streams if s != "events"}
        client = self.lists.client
        end_all = int(time.time() - self.settle)
        lo, step = start, self.window
        try:
            while lo < end_all:
                hi = min(end_all, int(lo + step))
                events: list[dict[str, Any]] = []
                params: dict[str, Any] = {"limit": self.page_size, "created[gte]": lo,
                                          "created[lt]": hi}
                too_many = False
                while True:
                    resp = await client.request("GET", "v1/events", params=params)
                    page = resp.body.get("data") or []
                    events.extend(page)
                    if len(events) > self.max_window_events and hi - lo > 1:
                        too_many = True
                        break
                    if not resp.body.get("has_more") or not page:
                        break
                    params["starting_after"] = page[-1]["id"]
                if too_many:
                    step = max(1.0, (hi - lo) / 2)
                    continue
                events.sort(key=lambda e: (e["created"], e["id"]))
                by_stream: dict[str, list[dict[str, Any]]] = {}
                if "events" in self.streams:
                    by_stream["events"] = events
                for e in events:
                    obj = (e.get("data") or {}).get("object")
                    if isinstance(obj, dict) and str(obj.get("object")) in types:
                        by_stream.setdefault(types[str(obj.get("object"))], []).append(obj)
                batches = [Batch(rows, stream=s) for s, rows in by_stream.items()] or \
                    [Batch([], stream="events")]
                batches[-1].position = {"phase": "events", "from": hi, "lists": lists}
                for b in batches:
                    yield b
                lo, step = hi, self.window
        finally:
            await client.close()
        yield Batch([], stream="events", position={"phase": "events", "from": lo, "lists": lists},
                    end_of_pass=True)
