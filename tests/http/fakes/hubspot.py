"""A fake of HubSpot's CRM v3 objects API.

As HubSpot documents it:
- Auth: private app tokens as ``Authorization: Bearer`` (https://developers.hubspot.com/docs/
  api/private-apps); otherwise ``401`` with ``category: INVALID_AUTHENTICATION``.
- List (https://developers.hubspot.com/docs/api/crm/contacts): ``GET
  /crm/v3/objects/{type}?limit&after&properties&archived``; ``limit`` at most 100;
  ``{"results": [{"id", "properties", "createdAt", "updatedAt", "archived"}], "paging":
  {"next": {"after", "link"}}}``.
- Search (https://developers.hubspot.com/docs/api/crm/search): ``POST .../search`` with
  ``filterGroups`` (``GTE``, ``GT``, ``LTE``, ``LT``, ``EQ``; dates as millisecond
  timestamps), one sort, ``limit`` at most 200, ``after``; the response has ``total``; a
  query can page through 10,000 results at most (beyond: ``400 VALIDATION_ERROR``); search
  is limited to 5 requests per second and its responses carry no rate-limit headers.
- Rate limits (https://developers.hubspot.com/docs/api/usage-details): other responses carry
  ``X-HubSpot-RateLimit-Max``, ``-Remaining`` and ``-Interval-Milliseconds``; over the limit
  is ``429`` with ``errorType: RATE_LIMIT`` and a ``policyName``.
- Contacts' last-modified property is ``lastmodifieddate``; companies' and deals'
  ``hs_lastmodifieddate``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from tests.http.fakes.base import Enforcer

TOKEN = "pat-na1-fake-token"
LAST = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate",
        "deals": "hs_lastmodifieddate"}


def stamp(i: int) -> str:
    base = dt.datetime(2024, 5, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i // 4)  # 4 per second
    return base.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_objects(kind: str, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(1, n + 1):
        props = {"createdate": stamp(i), LAST[kind]: stamp(i), "hs_object_id": str(i)}
        if kind == "contacts":
            props.update(email=f"p{i}@example.com", firstname=f"F{i}", lastname="L")
        elif kind == "companies":
            props.update(name=f"Co {i}", domain=f"co{i}.example")
        else:
            props.update(dealname=f"Deal {i}", amount=str(i * 100), dealstage="appointmentscheduled",
                         pipeline="default", closedate=None)
        out.append({"id": str(i), "properties": props, "createdAt": stamp(i),
                    "updatedAt": stamp(i), "archived": False})
    return out


def _millis(text: str) -> int:
    if text.isdigit():
        return int(text)
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def make_app(objects: dict[str, list[dict[str, Any]]], *, search_cap: int = 10_000,
             limit: int = 100, interval_ms: int = 10_000) -> web.Application:
    app = web.Application()
    app["objects"] = objects
    app["general"] = Enforcer(limit, interval_ms / 1000)
    app["search"] = Enforcer(5, 1.0)
    app["search_requests"] = 0

    def denied(request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"status": "error", "message": "Authentication credentials "
                                      "not found.", "category": "INVALID_AUTHENTICATION"}, status=401)
        return None

    def shaped(obj: dict[str, Any], props: list[str]) -> dict[str, Any]:
        return {**obj, "properties": {p: obj["properties"].get(p) for p in props}}

    async def listing(request: web.Request) -> web.Response:
        refused = denied(request)
        if refused is not None:
            return refused
        enforcer: Enforcer = app["general"]
        if not enforcer.admit():
            return web.json_response({"status": "error", "message": "You have reached your "
                                      "ten_secondly_rolling limit.", "errorType": "RATE_LIMIT",
                                      "policyName": "TEN_SECONDLY_ROLLING"}, status=429)
        kind = request.match_info["kind"]
        q = request.query
        size = int(q.get("limit", 10))
        if size > 100:
            return web.json_response({"status": "error", "category": "VALIDATION_ERROR",
                                      "message": "limit must be at most 100"}, status=400)
        start = int(q.get("after", 0))
        props = q.get("properties", "").split(",") if q.get("properties") else []
        rows = sorted(app["objects"][kind], key=lambda o: int(o["id"]))
        page = rows[start:start + size]
        body: dict[str, Any] = {"results": [shaped(o, props) for o in page]}
        if start + size < len(rows):
            body["paging"] = {"next": {"after": str(start + size),
                                       "link": f"{request.url}&after={start + size}"}}
        return web.json_response(body, headers={
            "X-HubSpot-RateLimit-Max": str(limit),
            "X-HubSpot-RateLimit-Remaining": str(enforcer.remaining()),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(interval_ms)})

    async def search(request: web.Request) -> web.Response:
        refused = denied(request)
        if refused is not None:
            return refused
        app["search_requests"] += 1
        if not app["search"].admit() or not app["general"].admit():
            return web.json_response({"status": "error", "message": "You have reached your "
                                      "secondly limit.", "errorType": "RATE_LIMIT",
                                      "policyName": "SECONDLY"}, status=429)
        kind = request.match_info["kind"]
        body = await request.json()
        size = int(body.get("limit", 10))
        after = int(body.get("after", 0))
        if size > 200:
            return web.json_response({"status": "error", "category": "VALIDATION_ERROR",
                                      "message": "limit must be at most 200"}, status=400)
        if after + size > search_cap:
            return web.json_response({"status": "error", "category": "VALIDATION_ERROR",
                                      "message": f"Search results are limited to {search_cap} "
                                                 "records per query"}, status=400)
        rows = list(app["objects"][kind])
        for group in body.get("filterGroups", []):
            for f in group["filters"]:
                prop, op, value = f["propertyName"], f["operator"], _millis(str(f["value"]))
                test = {"GTE": lambda a, b: a >= b, "GT": lambda a, b: a > b,
                        "LTE": lambda a, b: a <= b, "LT": lambda a, b: a < b,
                        "EQ": lambda a, b: a == b}[op]
                rows = [r for r in rows if test(_millis(r["properties"][prop]), value)]
        for sort in body.get("sorts", [])[:1]:
            rows.sort(key=lambda r: (r["properties"][sort["propertyName"]], int(r["id"])),
                      reverse=sort.get("direction") == "DESCENDING")
        page = rows[after:after + size]
        out: dict[str, Any] = {"total": len(rows),
                               "results": [shaped(o, body.get("properties", [])) for o in page]}
        if after + size < len(rows):
            out["paging"] = {"next": {"after": str(after + size)}}
        return web.json_response(out)

    app.router.add_get("/crm/v3/objects/{kind}", listing)
    app.router.add_post("/crm/v3/objects/{kind}/search", search)
    return app
