"""A generic JSON API of orders and their lines, for the declarative REST source.

It is not one vendor's API; it implements the standards REST APIs are documented against:
- pagination by offset/limit, page number, a body cursor, a ``next`` URL in the body, or the
  ``Link`` header with ``rel="next"`` (RFC 8288 section 3);
- a ``updated_since`` filter (inclusive) over records ordered by ``(updated_at, id)``;
- ``Authorization: Bearer`` (RFC 6750 section 2.1; 401 with ``WWW-Authenticate`` otherwise)
  and an OAuth 2.0 token endpoint with the client credentials grant (RFC 6749 section 4.4,
  client authentication in the body or HTTP Basic, section 2.3.1) and the refresh-token
  grant (section 6); errors as section 5.2 (``{"error": "invalid_client"}``, 400/401);
- rate limits: ``429 Too Many Requests`` with ``Retry-After`` (RFC 6585 section 4, RFC 9110
  section 10.2.3) and ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (seconds) headers as
  the IETF RateLimit header draft describes; injected 5xx errors.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
from collections import Counter
from typing import Any

from aiohttp import web

from tests.http.fakes.base import Enforcer, Faults

TOKEN_TTL = 3600


def _stamp(seconds: int) -> str:
    return (dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
            ).isoformat().replace("+00:00", "Z")


def make_orders(n: int, lines: int = 2) -> list[dict[str, Any]]:
    """``n`` orders; ``updated_at`` grows with the id, two orders per second (ties)."""
    return [{"id": i, "customer": f"c{i % 97}", "amount": i * 10 % 9973,
             "updated_at": _stamp(i // 2), "lines": lines} for i in range(1, n + 1)]


def make_app(orders: list[dict[str, Any]], *, mode: str = "offset", page_size: int = 100,
             limit: int | None = None, period: float = 1.0, fault_rate: float = 0.0,
             seed: int = 7, auth: str | None = None, client_secret: str = "s3cret",
             token_ttl: int = TOKEN_TTL) -> web.Application:
    app = web.Application()
    app["orders"] = {o["id"]: o for o in orders}
    app["enforcer"] = Enforcer(limit, period)
    app["faults"] = Faults(fault_rate, seed=seed)
    app["served"] = Counter()
    app["tokens"] = {}
    app["auth"] = auth
    app["token_requests"] = 0
    app["refresh_tokens"] = {"r-1"}
    counter = itertools.count(1)

    def sorted_orders(since: str | None) -> list[dict[str, Any]]:
        rows = sorted(app["orders"].values(), key=lambda o: (o["updated_at"], o["id"]))
        return [o for o in rows if since is None or o["updated_at"] >= since]

    def guard(request: web.Request) -> web.Response | None:
        enforcer: Enforcer = app["enforcer"]
        if not enforcer.admit():
            return web.json_response({"error": "rate_limited"}, status=429, headers={
                "Retry-After": f"{max(1, round(enforcer.reset_in() + 0.5))}"})
        fault = app["faults"].pick()
        if fault is not None:
            return web.json_response({"error": "injected"}, status=fault)
        if app["auth"] == "bearer":
            header = request.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ")
            expiry = app["tokens"].get(token)
            if not header.startswith("Bearer ") or expiry is None:
                return web.json_response({"error": "invalid_token"}, status=401,
                                         headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return None

    def headers() -> dict[str, str]:
        enforcer: Enforcer = app["enforcer"]
        return {"X-RateLimit-Remaining": str(enforcer.remaining()),
                "X-RateLimit-Reset": f"{enforcer.reset_in():.3f}"}

    async def list_orders(request: web.Request) -> web.Response:
        refused = guard(request)
        if refused is not None:
            return refused
        q = request.query
        rows = sorted_orders(q.get("updated_since"))
        size = int(q.get("limit", page_size))
        body: dict[str, Any]
        extra: dict[str, str] = {}
        if mode == "offset":
            start = int(q.get("offset", 0))
            page = rows[start:start + size]
            body = {"data": page, "total": len(rows)}
        elif mode == "page":
            number = int(q.get("page", 1))
            page = rows[(number - 1) * size:number * size]
            body = {"items": page, "page": number, "total_pages": -(-len(rows) // size)}
        else:
            start = int(q.get("cursor") or q.get("after") or 0)
            page = rows[start:start + size]
            more = start + size < len(rows)
            if mode == "cursor":
                body = {"data": page, "next_cursor": str(start + size) if more else None}
            elif mode == "json_link":
                url = request.url.update_query({"after": str(start + size)})
                body = {"data": page, "next": str(url) if more else None}
            else:  # link
                body = {"data": page}
                if more:
                    url = request.url.update_query({"after": str(start + size)})
                    extra["Link"] = f'<{url}>; rel="next", <{request.url}>; rel="self"'
        for o in page:
            app["served"][o["id"]] += 1
        return web.json_response(body, headers={**headers(), **extra})

    async def order_lines(request: web.Request) -> web.Response:
        refused = guard(request)
        if refused is not None:
            return refused
        raw = request.match_info["id"]
        oid = int(raw) if raw.isdigit() else -1
        order = app["orders"].get(oid)
        if order is None:
            return web.json_response({"error": "not_found"}, status=404)
        lines = [{"line_id": f"{oid}-{k}", "order_id": oid, "sku": f"sku{(oid + k) % 50}",
                  "qty": k + 1} for k in range(order["lines"])]
        return web.json_response({"data": lines}, headers=headers())

    async def token(request: web.Request) -> web.Response:
        app["token_requests"] += 1
        form = await request.post()
        cid, secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if form.get("refresh_token") not in app["refresh_tokens"]:
                return web.json_response({"error": "invalid_grant"}, status=400)
        elif grant != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if cid != "etl" or secret != client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        value = f"tok-{next(counter)}"
        app["tokens"][value] = token_ttl
        return web.Response(text=json.dumps({"access_token": value, "token_type": "Bearer",
                                             "expires_in": token_ttl}),
                            content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    app.router.add_get("/orders", list_orders)
    app.router.add_get("/orders/{id}/lines", order_lines)
    app.router.add_post("/oauth/token", token)
    return app


if __name__ == "__main__":  # python -m tests.http.fakes.generic PORT_FILE N [fault_rate]
    import sys

    from tests.http.fakes.base import run_forever

    n = int(sys.argv[2])
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    run_forever(lambda: make_app(make_orders(n), fault_rate=rate, page_size=50), sys.argv[1])
