"""A fake of Stripe's REST API for list endpoints and events.

As Stripe documents it:
- Auth (https://docs.stripe.com/api/authentication): ``Authorization: Bearer sk_...`` or
  HTTP Basic with the key as user name; otherwise ``401`` with an ``error`` object of type
  ``invalid_request_error`` ("Invalid API Key provided").
- Lists (https://docs.stripe.com/api/pagination): ``{"object": "list", "url", "has_more",
  "data"}``, newest first (reverse chronological by ``created``), ``limit`` 1..100 (default
  10; outside it ``400`` naming ``param: limit``), ``starting_after`` / ``ending_before`` an
  object id (an unknown id is ``400 resource_missing``); ``created`` takes ``gt``, ``gte``,
  ``lt``, ``lte`` (https://docs.stripe.com/api/customers/list).
- Subscriptions list without ``status`` omits canceled ones; ``status=all`` includes them
  (https://docs.stripe.com/api/subscriptions/list).
- Events (https://docs.stripe.com/api/events/list): ``type`` / ``types[]`` filters and
  ``data.object`` holding the object as of the event.
- Amounts are integers in the smallest currency unit with a lowercase ISO ``currency``
  (https://docs.stripe.com/currencies#zero-decimal).
- Rate limits (https://docs.stripe.com/rate-limits): ``429`` with ``error.code:
  rate_limit``; 25 read requests/s in test mode.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

from aiohttp import web

from tests.http.fakes.base import Enforcer, Faults

API_KEY = "sk_test_fake_4eC39HqLyjWDarjtT1zdp7dc"
KINDS = {"customers": "customer", "charges": "charge", "invoices": "invoice",
         "subscriptions": "subscription", "payment_intents": "payment_intent"}


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error",
                                        **extra}}, status=status)


class StripeState:
    def __init__(self, n: int, t0: int = 1_700_000_000) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        self.events: list[dict[str, Any]] = []
        self.clock = t0
        self._ids = itertools.count(1)
        for i in range(n):
            self.create("customers", {"email": f"c{i}@example.com", "name": f"C {i}",
                                      "balance": 0, "currency": "usd", "metadata": {}},
                        created=t0 + i // 3)  # three customers per second: ties on created
            self.create("charges", {"amount": 1000 + i, "currency": "eur" if i % 2 else "jpy",
                                    "status": "succeeded", "paid": True},
                        created=t0 + i // 3)
        for i in range(10):
            self.create("subscriptions", {"customer": "cus_1", "currency": "usd",
                                          "status": "canceled" if i % 5 == 0 else "active"},
                        created=t0 + i)

    def create(self, kind: str, fields: dict[str, Any], created: int | None = None) -> dict[str, Any]:
        prefix = {"customers": "cus", "charges": "ch", "invoices": "in", "subscriptions": "sub",
                  "payment_intents": "pi"}[kind]
        obj = {"id": f"{prefix}_{next(self._ids):08d}", "object": KINDS[kind],
               "created": created if created is not None else self.clock, "livemode": False,
               **fields}
        self.objects[kind].append(obj)
        self._event(f"{KINDS[kind]}.created", obj)
        return obj

    def update(self, kind: str, oid: str, at: int, **fields: Any) -> None:
        obj = next(o for o in self.objects[kind] if o["id"] == oid)
        obj.update(fields)
        self._event(f"{KINDS[kind]}.updated", obj, at)

    def _event(self, type_: str, obj: dict[str, Any], at: int | None = None) -> None:
        self.events.append({"id": f"evt_{next(self._ids):08d}", "object": "event",
                            "type": type_, "created": at if at is not None else obj["created"],
                            "api_version": "2024-06-20", "livemode": False,
                            "data": {"object": dict(obj)}})


def make_app(state: StripeState, *, limit: int | None = 25, fault_rate: float = 0.0) -> web.Application:
    app = web.Application()
    app["state"] = state
    app["enforcer"] = Enforcer(limit, 1.0)
    app["faults"] = Faults(fault_rate, statuses=(500, 503))

    def authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[7:] == API_KEY
        if header.startswith("Basic "):
            return base64.b64decode(header[6:]).decode().split(":")[0] == API_KEY
        return False

    def listing(rows: list[dict[str, Any]], request: web.Request, url: str) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", 10))
        except ValueError:
            return _error(400, "Invalid integer: limit", param="limit")
        if not 1 <= limit <= 100:
            return _error(400, "This value must be greater than or equal to 1 and less than "
                               "or equal to 100.", param="limit")
        for op, test in (("gt", lambda v, x: v > x), ("gte", lambda v, x: v >= x),
                         ("lt", lambda v, x: v < x), ("lte", lambda v, x: v <= x)):
            raw = q.get(f"created[{op}]")
            if raw is not None:
                rows = [r for r in rows if test(r["created"], int(raw))]
        rows = sorted(rows, key=lambda r: (r["created"], r["id"]), reverse=True)
        after = q.get("starting_after")
        if after:
            ids = [r["id"] for r in rows]
            if after not in ids:
                return _error(400, f"No such object: '{after}'", code="resource_missing",
                              param="starting_after")
            rows = rows[ids.index(after) + 1:]
        page = rows[:limit]
        return web.json_response({"object": "list", "url": url, "has_more": len(rows) > limit,
                                  "data": page})

    def guard(request: web.Request) -> web.Response | None:
        if not authorized(request):
            return _error(401, "Invalid API Key provided: sk_test_****")
        if not app["enforcer"].admit():
            return _error(429, "Request rate limit exceeded.", code="rate_limit")
        fault = app["faults"].pick()
        if fault is not None:
            return web.json_response({"error": {"type": "api_error",
                                                "message": "injected"}}, status=fault)
        return None

    async def objects(request: web.Request) -> web.Response:
        refused = guard(request)
        if refused is not None:
            return refused
        kind = request.match_info["kind"]
        if kind not in KINDS:
            return _error(404, f"Unrecognized request URL (GET: /v1/{kind}).")
        rows = state.objects[kind]
        if kind == "subscriptions":
            status = request.query.get("status")
            rows = [r for r in rows if (r["status"] != "canceled" if status is None
                                        else status == "all" or r["status"] == status)]
        return listing(rows, request, f"/v1/{kind}")

    async def events(request: web.Request) -> web.Response:
        refused = guard(request)
        if refused is not None:
            return refused
        types = request.query.getall("types[]", []) or ([request.query["type"]]
                                                        if "type" in request.query else [])
        rows = [e for e in state.events if not types or any(
            e["type"] == t or (t.endswith(".*") and e["type"].startswith(t[:-1])) for t in types)]
        return listing(rows, request, "/v1/events")

    app.router.add_get("/v1/events", events)
    app.router.add_get("/v1/{kind}", objects)
    return app
