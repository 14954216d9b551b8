"""Shopify through the GraphQL Admin API: orders, customers, products, inventory items.

Cursor pagination over connections (``first`` / ``after``, ``pageInfo``), the query cost
and throttle status in ``extensions.cost`` (the source waits for the bucket to refill;
a ``THROTTLED`` error is retried after the wait), incremental by ``updatedAt`` through the
``query: "updated_at:>='...'"`` search argument with ``sortKey: UPDATED_AT``, with a
lookback window (``lookback`` seconds) for records that appear late.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from etlsync.connectors.http.graphql import GraphqlSource
from etlsync.core.errors import ConfigError

API_VERSION = "2024-10"

_FIELDS = {
    "orders": ("orders", "id name createdAt updatedAt currencyCode "
               "totalPriceSet { shopMoney { amount currencyCode } } customer { id }"),
    "customers": ("customers", "id email firstName lastName createdAt updatedAt"),
    "products": ("products", "id title handle status createdAt updatedAt"),
    "inventory_items": ("inventoryItems", "id sku tracked createdAt updatedAt"),
}

SCHEMAS: dict[str, dict[str, str]] = {
    "orders": {"id": "string", "name": "string", "createdAt": "string", "updatedAt": "string",
               "currencyCode": "string", "totalPriceSet": "json", "customer": "json"},
    "customers": {"id": "string", "email": "string", "firstName": "string",
                  "lastName": "string", "createdAt": "string", "updatedAt": "string"},
    "products": {"id": "string", "title": "string", "handle": "string", "status": "string",
                 "createdAt": "string", "updatedAt": "string"},
    "inventory_items": {"id": "string", "sku": "string", "tracked": "boolean",
                        "createdAt": "string", "updatedAt": "string"},
}
STREAMS = tuple(_FIELDS)


def query_for(stream: str) -> str:
    field, selection = _FIELDS[stream]
    return ("query Read($first: Int!, $cursor: String, $query: String) { "
            f"{field}(first: $first, after: $cursor, query: $query, sortKey: UPDATED_AT) "
            f"{{ pageInfo {{ hasNextPage endCursor }} nodes {{ {selection} }} }} }}")


class ShopifySource(GraphqlSource):
    """A shop's records (see the module docstring).

    :param shop: ``my-shop`` or ``my-shop.myshopify.com``.
    :param access_token: an Admin API access token (``{env: NAME}`` / ``{file: path}``).
    :param base_url: the GraphQL endpoint instead of the shop's (tests, proxies).
    """

    name = "shopify"

    def __init__(self, shop: str, access_token: Any, *, streams: Sequence[str] = STREAMS,
                 api_version: str = API_VERSION, sync_mode: str = "incremental",
                 start_date: str | None = None, lookback: float = 3600.0,
                 page_size: int = 100, base_url: str | None = None,
                 max_concurrency: int = 1) -> None:
        unknown = [s for s in streams if s not in _FIELDS]
        if unknown:
            raise ConfigError(f"streams: unknown Shopify stream(s) {unknown}; expected "
                              f"{', '.join(STREAMS)}")
        if not 1 <= page_size <= 250:
            raise ConfigError("page_size: Shopify connections take first: 1..250")
        host = shop if "." in shop else f"{shop}.myshopify.com"
        url = base_url or f"https://{host}/admin/api/{api_version}/graphql.json"
        client = {"base_url": url, "max_concurrency": max_concurrency,
                  "auth": {"type": "api_key", "name": "X-Shopify-Access-Token",
                           "api_key": access_token}}
        specs = []
        for s in streams:
            spec: dict[str, Any] = {"name": s, "query": query_for(s), "page_size": page_size,
                                    "connection_path": _FIELDS[s][0], "schema": SCHEMAS[s]}
            if sync_mode == "incremental":
                spec["incremental"] = {"cursor_path": "updatedAt", "start_param": "query",
                                       "initial_value": start_date, "lag": lookback}
                spec["start_template"] = "updated_at:>='{value}'"
            elif start_date:
                spec["variables"] = {"query": f"updated_at:>='{start_date}'"}
            specs.append(spec)
        super().__init__(client, specs, sync_mode=sync_mode)
