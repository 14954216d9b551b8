"""GraphQL source and the Shopify preset against the graphql-core fake of the Admin API."""

from __future__ import annotations

import pytest

from etlsync import Pipeline
from etlsync.connectors.http.graphql import GraphqlError, GraphqlSource
from etlsync.connectors.http.presets.shopify import ShopifySource
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.testing import CollectingSink
from tests.http.fakes.base import serve
from tests.http.fakes.shopify import make_app, make_data


async def run(source: object, store: MemoryCheckpointStore) -> CollectingSink:
    sink = CollectingSink()
    await Pipeline(source, [], [sink], name="shop", checkpoint_store=store).run()  # type: ignore[arg-type]
    return sink


async def test_shopify_reads_every_stream_and_waits_for_the_cost_bucket() -> None:
    data = make_data(700)
    app = make_app(data, bucket=300.0, restore_rate=400.0)
    async with serve(app) as url:
        src = ShopifySource("test-shop", "shpat_test", base_url=f"{url}/admin/api/2024-10/graphql.json",
                            page_size=100)
        store = MemoryCheckpointStore()
        sink = await run(src, store)
        by_stream: dict[str, list[str]] = {}
        for b in sink.batches:
            by_stream.setdefault(b.stream, []).extend(r["id"] for r in b.rows)
        assert by_stream["orders"] == [o["id"] for o in data["orders"]]
        assert len(by_stream["customers"]) == 50 and len(by_stream["inventory_items"]) == 30
        assert src.throttle.waited_seconds > 0
        assert app["state"]["throttled"] <= 2
        # incremental: an order updated later, one inside the lookback window, nothing else
        data["orders"][5]["updatedAt"] = "2030-01-01T00:00:00Z"
        data["orders"].append({**data["orders"][0], "id": "gid://shopify/Order/9999",
                               "updatedAt": "2024-03-01T11:20:00Z"})  # 20 min below the top
        again = await run(ShopifySource("test-shop", "shpat_test", page_size=100,
                                        base_url=f"{url}/admin/api/2024-10/graphql.json"), store)
    ids = sorted(r["id"] for b in again.batches if b.stream == "orders" for r in b.rows)
    assert ids == ["gid://shopify/Order/6", "gid://shopify/Order/9999"]


async def test_errors_in_the_body_fail_even_with_partial_data() -> None:
    data = make_data(20)
    app = make_app(data)
    app["fail_ids"].add(data["orders"][3]["id"])
    async with serve(app) as url:
        src = GraphqlSource({"base_url": f"{url}/admin/api/2024-10/graphql.json",
                             "headers": {"X-Shopify-Access-Token": "shpat_test"}},
                            [{"name": "orders", "connection_path": "orders", "query":
                              "query($first: Int!, $cursor: String) { orders(first: $first, "
                              "after: $cursor) { pageInfo { hasNextPage endCursor } "
                              "edges { node { id note } } } }"}])
        with pytest.raises(Exception) as info:
            await run(src, MemoryCheckpointStore())
    err = info.value
    while not isinstance(err, GraphqlError) and err.__cause__ is not None:
        err = err.__cause__  # type: ignore[assignment]
    assert isinstance(err, GraphqlError) and "partial data" in str(err)


async def test_a_wrong_token_is_a_permanent_error() -> None:
    app = make_app(make_data(5))
    async with serve(app) as url:
        src = ShopifySource("s", "wrong", base_url=f"{url}/admin/api/2024-10/graphql.json",
                            streams=["products"])
        with pytest.raises(Exception, match="401"):
            await run(src, MemoryCheckpointStore())
