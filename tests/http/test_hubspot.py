"""The HubSpot preset: CRM v3 lists, search re-windowing past the per-query cap, ties at the
watermark, the search endpoint's own 5 requests/s."""

from __future__ import annotations

from etlsync import Pipeline
from etlsync.connectors.http.presets.hubspot import HubspotSource
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.testing import CollectingSink
from tests.http.fakes.base import serve
from tests.http.fakes.hubspot import TOKEN, make_app, make_objects, stamp


async def test_full_refresh_lists_every_object() -> None:
    app = make_app({"contacts": make_objects("contacts", 250),
                    "companies": make_objects("companies", 20), "deals": make_objects("deals", 5)})
    async with serve(app) as url:
        src = HubspotSource(TOKEN, base_url=url, sync_mode="full_refresh")
        sink = CollectingSink()
        await Pipeline(src, [], [sink], name="h").run()
    streams = {b.stream for b in sink.batches}
    assert streams == {"contacts", "companies", "deals"}
    assert len([r for b in sink.batches if b.stream == "contacts" for r in b.rows]) == 250
    assert sink.rows[0]["email"] == "p1@example.com"
    assert app["general"].over_budget == 0


async def test_search_rewindows_past_the_cap_and_keeps_ties_once() -> None:
    contacts = make_objects("contacts", 1000)  # four records per second: ties everywhere
    app = make_app({"contacts": contacts}, search_cap=300)
    store = MemoryCheckpointStore()
    async with serve(app) as url:
        def src() -> HubspotSource:
            return HubspotSource(TOKEN, base_url=url, streams=["contacts"], page_size=100,
                                 search_cap=300)
        first = src()
        sink = CollectingSink()
        await Pipeline(first, [], [sink], name="h", checkpoint_store=store).run()
        ids = [r["id"] for r in sink.rows]
        assert sorted(ids, key=int) == [str(i) for i in range(1, 1001)]
        assert len(ids) == len(set(ids))
        assert first.windows >= 4
        assert app["search"].over_budget == 0
        # one more at the watermark's exact value, one modified later
        top = stamp(1000)
        contacts.append({"id": "2000", "createdAt": top, "updatedAt": top, "archived": False,
                         "properties": {"lastmodifieddate": top, "email": "tie@example.com"}})
        contacts[0]["updatedAt"] = contacts[0]["properties"]["lastmodifieddate"] = \
            "2024-06-01T00:00:00.000Z"
        again = CollectingSink()
        await Pipeline(src(), [], [again], name="h", checkpoint_store=store).run()
    assert sorted(r["id"] for r in again.rows) == ["1", "2000"]
