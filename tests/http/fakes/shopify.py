"""A fake of Shopify's GraphQL Admin API, executed by graphql-core against a schema.

What it implements, as Shopify documents it:
- ``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``; a wrong token
  is ``401 {"errors": "[API] Invalid API key or access token ..."}``
  (https://shopify.dev/docs/api/usage/authentication).
- Connections with ``first`` (at most 250), ``after``, ``query`` (search syntax, here
  ``updated_at:>='...'``) and ``sortKey: UPDATED_AT``; ``pageInfo { hasNextPage endCursor }``,
  ``edges { cursor node }`` and ``nodes`` (https://shopify.dev/docs/api/usage/pagination-graphql).
- Query cost and the leaky bucket (https://shopify.dev/docs/api/usage/rate-limits): a
  connection costs 2 plus ``first``; ``extensions.cost`` carries ``requestedQueryCost``,
  ``actualQueryCost`` and ``throttleStatus {maximumAvailable, currentlyAvailable,
  restoreRate}``; a query costing more than is available is answered (HTTP 200) with
  ``errors: [{message: "Throttled", extensions: {code: "THROTTLED"}}]``.
- Field errors come back with partial ``data`` and ``errors`` (GraphQL spec section 7.1.2).
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import graphql
from aiohttp import web

SDL = """
type Query {
  orders(first: Int!, after: String, query: String, sortKey: SortKey): OrderConnection!
  customers(first: Int!, after: String, query: String, sortKey: SortKey): CustomerConnection!
  products(first: Int!, after: String, query: String, sortKey: SortKey): ProductConnection!
  inventoryItems(first: Int!, after: String, query: String, sortKey: SortKey): InventoryItemConnection!
}
enum SortKey { UPDATED_AT ID CREATED_AT }
type PageInfo { hasNextPage: Boolean! endCursor: String hasPreviousPage: Boolean! startCursor: String }
type MoneyV2 { amount: String! currencyCode: String! }
type MoneyBag { shopMoney: MoneyV2! }
type CustomerRef { id: ID! }
type Order { id: ID! name: String! createdAt: String! updatedAt: String! currencyCode: String!
             totalPriceSet: MoneyBag! customer: CustomerRef note: String }
type OrderEdge { cursor: String! node: Order! }
type OrderConnection { edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! }
type Customer { id: ID! email: String firstName: String lastName: String
                createdAt: String! updatedAt: String! }
type CustomerEdge { cursor: String! node: Customer! }
type CustomerConnection { edges: [CustomerEdge!]! nodes: [Customer!]! pageInfo: PageInfo! }
type Product { id: ID! title: String! handle: String! status: String! createdAt: String! updatedAt: String! }
type ProductEdge { cursor: String! node: Product! }
type ProductConnection { edges: [ProductEdge!]! nodes: [Product!]! pageInfo: PageInfo! }
type InventoryItem { id: ID! sku: String tracked: Boolean! createdAt: String! updatedAt: String! }
type InventoryItemEdge { cursor: String! node: InventoryItem! }
type InventoryItemConnection { edges: [InventoryItemEdge!]! nodes: [InventoryItem!]! pageInfo: PageInfo! }
"""
SCHEMA = graphql.build_schema(SDL)
_SINCE = re.compile(r"updated_at:>=?'([^']+)'")


def _stamp(i: int) -> str:
    return f"2024-03-{1 + i // 1440 % 28:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z"


def make_data(n: int) -> dict[str, list[dict[str, Any]]]:
    orders = [{"id": f"gid://shopify/Order/{i}", "name": f"#{1000 + i}", "createdAt": _stamp(i),
               "updatedAt": _stamp(i), "currencyCode": "EUR",
               "totalPriceSet": {"shopMoney": {"amount": f"{i % 500}.{i % 100:02d}",
                                               "currencyCode": "EUR"}},
               "customer": {"id": f"gid://shopify/Customer/{i % 50}"}} for i in range(1, n + 1)]
    customers = [{"id": f"gid://shopify/Customer/{i}", "email": f"c{i}@example.com",
                  "firstName": f"F{i}", "lastName": "L", "createdAt": _stamp(i),
                  "updatedAt": _stamp(i)} for i in range(1, 51)]
    products = [{"id": f"gid://shopify/Product/{i}", "title": f"P{i}", "handle": f"p-{i}",
                 "status": "ACTIVE", "createdAt": _stamp(i), "updatedAt": _stamp(i)}
                for i in range(1, 31)]
    items = [{"id": f"gid://shopify/InventoryItem/{i}", "sku": f"SKU{i}", "tracked": True,
              "createdAt": _stamp(i), "updatedAt": _stamp(i)} for i in range(1, 31)]
    return {"orders": orders, "customers": customers, "products": products,
            "inventoryItems": items}


def make_app(data: dict[str, list[dict[str, Any]]], *, token: str = "shpat_test",
             bucket: float = 1000.0, restore_rate: float = 50.0) -> web.Application:
    app = web.Application()
    app["data"] = data
    app["state"] = {"available": bucket, "at": time.monotonic(), "throttled": 0, "queries": 0}
    app["fail_ids"] = set()

    def connection(kind: str) -> Any:
        def resolve(_info: Any, first: int, after: str | None = None, query: str | None = None,
                    sortKey: str | None = None) -> dict[str, Any]:
            rows = list(app["data"][kind])
            if query:
                m = _SINCE.search(query)
                if m:
                    rows = [r for r in rows if r["updatedAt"] >= m.group(1)]
            if sortKey == "UPDATED_AT":
                rows.sort(key=lambda r: (r["updatedAt"], int(r["id"].rsplit("/", 1)[1])))
            start = int(base64.b64decode(after).decode()) if after else 0
            page = rows[start:start + first]
            cursors = [base64.b64encode(str(start + k + 1).encode()).decode()
                       for k in range(len(page))]
            app["state"]["returned"] = len(page)
            return {"edges": [{"cursor": c, "node": n} for c, n in zip(cursors, page, strict=True)],
                    "nodes": page,
                    "pageInfo": {"hasNextPage": start + first < len(rows),
                                 "endCursor": cursors[-1] if cursors else None,
                                 "hasPreviousPage": start > 0,
                                 "startCursor": cursors[0] if cursors else None}}
        return resolve

    root = {"orders": connection("orders"), "customers": connection("customers"),
            "products": connection("products"), "inventoryItems": connection("inventoryItems")}

    def note(obj: dict[str, Any], _info: Any) -> str:
        if obj["id"] in app["fail_ids"]:
            raise ValueError("Internal error while reading the note")
        return ""

    SCHEMA.get_type("Order").fields["note"].resolve = note  # type: ignore[union-attr]

    async def endpoint(request: web.Request) -> web.Response:
        if request.headers.get("X-Shopify-Access-Token") != token:
            return web.json_response({"errors": "[API] Invalid API key or access token "
                                                "(unrecognized login or wrong password)"},
                                     status=401)
        body = await request.json()
        state = app["state"]
        now = time.monotonic()
        state["available"] = min(bucket, state["available"] + (now - state["at"]) * restore_rate)
        state["at"] = now
        first = int((body.get("variables") or {}).get("first") or 0)
        requested = 2 + first
        cost = {"requestedQueryCost": requested, "actualQueryCost": None,
                "throttleStatus": {"maximumAvailable": bucket,
                                   "currentlyAvailable": int(state["available"]),
                                   "restoreRate": restore_rate}}
        if requested > state["available"]:
            state["throttled"] += 1
            return web.json_response({"errors": [{"message": "Throttled", "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": cost}})
        state["queries"] += 1
        result = graphql.graphql_sync(SCHEMA, body["query"], root_value=root,
                                      variable_values=body.get("variables"))
        actual = 2 + state.pop("returned", 0)
        state["available"] -= actual
        cost["actualQueryCost"] = actual
        cost["throttleStatus"]["currentlyAvailable"] = int(state["available"])
        out: dict[str, Any] = {"data": result.data, "extensions": {"cost": cost}}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        return web.json_response(out)

    app.router.add_post("/admin/api/{version}/graphql.json", endpoint)
    return app
