"""HubSpot CRM v3: contacts, companies and deals.

- Full refresh: ``GET /crm/v3/objects/{type}`` with ``limit`` (at most 100), ``properties``
  and ``paging.next.after``.
- Incremental: ``POST /crm/v3/objects/{type}/search`` filtered ``GTE`` on the last-modified
  property (``lastmodifieddate`` for contacts, ``hs_lastmodifieddate`` otherwise) and sorted
  ascending on it. A search serves at most 10,000 results per query; before ``after`` would
  pass that, the source starts a new query from the last value it delivered (re-windowing),
  and etlsync's tie rule skips the records at that value it already delivered. A window
  that holds 10,000 records of a single value cannot be paged and fails with a clear error.
- Rate limits: the account's budget (``X-HubSpot-RateLimit-Remaining`` and the interval
  header pause the client), and the search endpoints' own limit (5 requests/s), which sends
  no rate-limit headers.

Rows are the object's ``id``, ``createdAt``, ``updatedAt``, ``archived`` and its properties
as columns. The position is ``{"i": stream index, "wm": {stream: watermark}, "after": ...}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from etlsync.connectors.http import config as cfg
from etlsync.connectors.http.budget import RequestBudget
from etlsync.connectors.http.client import UsesClient
from etlsync.connectors.http.incremental import parse_time
from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.incremental import Watermark
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Source

LAST_MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate",
                 "deals": "hs_lastmodifieddate"}
PROPERTIES = {
    "contacts": ["email", "firstname", "lastname", "createdate", "lastmodifieddate"],
    "companies": ["name", "domain", "createdate", "hs_lastmodifieddate"],
    "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "createdate",
              "hs_lastmodifieddate"],
}
STREAMS = tuple(PROPERTIES)


def schema_for(stream: str, properties: Sequence[str]) -> Schema:
    cols = [Column("id", ColumnType.STRING, False), Column("createdAt", ColumnType.STRING),
            Column("updatedAt", ColumnType.STRING), Column("archived", ColumnType.BOOLEAN)]
    cols += [Column(p, ColumnType.STRING) for p in properties]  # HubSpot sends strings
    return Schema(tuple(cols), ("id",))


def _millis(value: str) -> str:
    parsed = parse_time(value)
    return str(int(parsed.timestamp() * 1000)) if parsed is not None else value


def _row(obj: Mapping[str, Any]) -> Row:
    return {"id": obj.get("id"), "createdAt": obj.get("createdAt"),
            "updatedAt": obj.get("updatedAt"), "archived": obj.get("archived", False),
            **(obj.get("properties") or {})}


class HubspotSource(UsesClient, Source):
    """CRM objects of a HubSpot account (see the module docstring).

    :param access_token: a private app's access token (``{env: HUBSPOT_TOKEN}``).
    :param start_date: incremental: read objects modified since then (ISO 8601).
    :param search_cap: results one search query can page through (HubSpot: 10,000).
    """

    name = "hubspot"
    capabilities = frozenset({Capability.PASSES})

    def __init__(self, access_token: Any, *, streams: Sequence[str] = STREAMS,
                 sync_mode: str = "incremental", properties: Mapping[str, list[str]] | None = None,
                 start_date: str | None = None, page_size: int = 100,
                 base_url: str = "https://api.hubapi.com", search_cap: int = 10_000,
                 budget: dict[str, Any] | None = None, search_rate: float = 5.0,
                 retry: dict[str, Any] | None = None) -> None:
        bad = [s for s in streams if s not in PROPERTIES]
        if bad:
            raise ConfigError(f"streams: unknown HubSpot stream(s) {bad}; expected "
                              f"{', '.join(STREAMS)}")
        if sync_mode not in ("full_refresh", "incremental"):
            raise ConfigError("sync_mode: full_refresh or incremental")
        if not 1 <= page_size <= 100:
            raise ConfigError("page_size: HubSpot lists take limit 1..100")
        self.streams, self.sync_mode, self.start_date = list(streams), sync_mode, start_date
        self.properties = {s: list((properties or {}).get(s, PROPERTIES[s])) for s in self.streams}
        for s in self.streams:
            if LAST_MODIFIED[s] not in self.properties[s]:
                self.properties[s].append(LAST_MODIFIED[s])
        self.page_size, self.search_cap = page_size, search_cap
        client: dict[str, Any] = {
            "base_url": base_url, "auth": {"type": "bearer", "token": access_token},
            # private apps on Free/Starter: 100 requests per 10 s; the headers say more
            "budget": budget or {"call_limit": 100, "period": 10.0,
                                 "ratelimit_remaining_header": "X-HubSpot-RateLimit-Remaining",
                                 "ratelimit_reset_header":
                                     "X-HubSpot-RateLimit-Interval-Milliseconds",
                                 "reset_unit": "milliseconds"}}
        if retry:
            client["retry"] = retry
        self.client_config: cfg.Client = cfg.convert(client, cfg.Client, "client")
        self.search_budget = RequestBudget(cfg.Budget(call_limit=max(1, int(search_rate)),
                                                      period=max(1.0, int(search_rate)) / search_rate))
        self.windows = 0

    def extra_metrics(self) -> dict[str, Any]:
        return {**super().extra_metrics(), "search_windows": self.windows}

    async def discover(self) -> dict[str, Schema]:
        return {s: schema_for(s, self.properties[s]) for s in self.streams}

    def next_pass(self, position: Any) -> Any | None:
        if self.sync_mode != "incremental" or not isinstance(position, dict):
            return None
        return {"i": 0, "wm": position.get("wm") or {}, "after": None}

    def read(self, position: Any | None) -> AsyncIterator[Batch]:
        return self.read_in_order(position, self.streams, "after", self._read_stream)

    def _read_stream(self, i: int, after: Any, wm_states: dict[str, Any]) -> AsyncIterator[Batch]:
        if self.sync_mode == "incremental":
            return self._search(i, self.streams[i], wm_states)
        return self._list(i, self.streams[i], after)

    async def _list(self, i: int, s: str, after: str | None) -> AsyncIterator[Batch]:
        schema = schema_for(s, self.properties[s])
        while True:
            params: dict[str, Any] = {"limit": self.page_size,
                                      "properties": ",".join(self.properties[s]),
                                      "archived": "false"}
            if after:
                params["after"] = after
            resp = await self.client.request("GET", f"crm/v3/objects/{s}", params=params)
            rows = [_row(o) for o in resp.body.get("results") or []]
            nxt = (((resp.body.get("paging") or {}).get("next")) or {}).get("after")
            position = {"i": i, "after": nxt} if nxt else {"i": i + 1, "after": None}
            yield Batch(rows, stream=s, position=position, schema=schema)
            if not nxt:
                return
            after = nxt

    async def _search(self, i: int, s: str, wm_states: dict[str, Any]) -> AsyncIterator[Batch]:
        schema = schema_for(s, self.properties[s])
        wm = Watermark.from_state("updatedAt", ("id",), wm_states.get(s))
        prop = LAST_MODIFIED[s]
        limit = min(200, self.page_size)
        while True:  # one search window
            self.windows += 1
            since = wm.value or self.start_date
            window_start = wm.value
            body: dict[str, Any] = {"sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                                    "properties": self.properties[s], "limit": limit}
            if since is not None:
                body["filterGroups"] = [{"filters": [{"propertyName": prop, "operator": "GTE",
                                                      "value": _millis(str(since))}]}]
            after = 0
            capped = False
            while True:
                if after:
                    body["after"] = str(after)
                resp = await self.client.request("POST", f"crm/v3/objects/{s}/search",
                                                 json=body, budgets=(self.search_budget,))
                results = resp.body.get("results") or []
                rows = wm.admit([_row(o) for o in results])
                wm_states[s] = wm.to_state()
                nxt = (((resp.body.get("paging") or {}).get("next")) or {}).get("after")
                capped = nxt is not None and int(nxt) + limit > self.search_cap
                done = nxt is None
                position = {"i": i + 1 if done else i, "wm": dict(wm_states), "after": None}
                yield Batch(rows, stream=s, position=position, schema=schema)
                if nxt is None or capped:
                    break
                after = int(nxt)
            if not capped:
                return
            if wm.value == window_start:
                raise ConfigError(f"HubSpot {s}: more than {self.search_cap} records share "
                                  f"{prop} = {wm.value}; a search cannot page past them")
