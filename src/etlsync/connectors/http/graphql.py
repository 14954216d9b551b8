"""GraphqlSource: queries with variables, Relay cursor pagination, errors in the body, and
cost-based throttling where the API reports query costs (Shopify's ``extensions.cost``).

Each stream is a query whose ``connection_path`` (``orders``, ``shop.products``) is a Relay
connection: records are ``edges[].node`` (or ``nodes``), pages follow
``pageInfo { hasNextPage endCursor }`` through the ``$cursor`` variable. A response with
``errors`` fails the stream even when it carries data (partial data is not success), except
a throttle error (``extensions.code: THROTTLED``), which waits until the cost bucket has
refilled and asks again. With ``extensions.cost.throttleStatus`` reported, every query
waits beforehand until the bucket holds what the last one cost.

Positions: ``{"i": stream index, "cursor": endCursor, "wm": {stream: watermark state}}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import msgspec

from etlsync.connectors.http import config as cfg
from etlsync.connectors.http.client import HttpTransientError, UsesClient
from etlsync.connectors.http.incremental import ApiWatermark, as_param
from etlsync.connectors.http.paginate import find
from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Source
from etlsync.resilience import PermanentError


class GraphqlStream(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One query: ``$cursor`` (and ``$first``) are set by the source."""

    name: str
    query: str
    connection_path: str
    variables: dict[str, Any] = {}
    page_size: int = 50
    primary_key: str | list[str] = "id"
    incremental: cfg.Incremental | None = None
    start_template: str = "{value}"
    """How the start value fills ``incremental.start_param`` (a variable): Shopify search
    syntax is ``updated_at:>='{value}'``."""
    schema: dict[str, str] | None = None


class GraphqlError(PermanentError):
    """The response's ``errors`` (the query failed, or returned partial data)."""


class CostThrottle:
    """The API's cost bucket as it last reported it; waits so the next query fits."""

    def __init__(self) -> None:
        self.available: float | None = None
        self.restore_rate = 0.0
        self.maximum = 0.0
        self.last_cost = 0.0
        self.seen_at = 0.0
        self.waited_seconds = 0.0
        self.throttled = 0

    def learn(self, extensions: Any) -> None:
        cost = find(extensions, "cost") if isinstance(extensions, Mapping) else None
        if not isinstance(cost, Mapping):
            return
        status = cost.get("throttleStatus") or {}
        loop = asyncio.get_running_loop()
        self.available = float(status.get("currentlyAvailable", 0.0))
        self.restore_rate = float(status.get("restoreRate", 0.0))
        self.maximum = float(status.get("maximumAvailable", 0.0))
        self.last_cost = float(cost.get("requestedQueryCost") or cost.get("actualQueryCost") or 0)
        self.seen_at = loop.time()

    def needed_wait(self, cost: float | None = None) -> float:
        if self.available is None or not self.restore_rate:
            return 0.0
        want = min(cost if cost is not None else self.last_cost, self.maximum or float("inf"))
        now = asyncio.get_running_loop().time()
        have = min(self.maximum or float("inf"),
                   self.available + (now - self.seen_at) * self.restore_rate)
        return max(0.0, (want - have) / self.restore_rate)

    async def wait(self, cost: float | None = None) -> None:
        delay = self.needed_wait(cost)
        if delay > 0:
            self.waited_seconds += delay
            await asyncio.sleep(delay)


class GraphqlSource(UsesClient, Source):
    """Records of GraphQL connections (see the module docstring).

    :param client: the endpoint (``base_url``: the GraphQL URL), headers, auth, retries.
    :param streams: queries (:class:`GraphqlStream` fields as mappings).
    :param max_throttled: throttle answers in a row before giving up.
    """

    name = "graphql"
    capabilities = frozenset({Capability.PASSES})

    def __init__(self, client: Mapping[str, Any], streams: Sequence[Mapping[str, Any]], *,
                 sync_mode: str | None = None, max_throttled: int = 50) -> None:
        self.client_config: cfg.Client = cfg.convert(dict(client), cfg.Client, "client")
        self.streams: list[GraphqlStream] = [
            cfg.convert(dict(s), GraphqlStream, f"streams[{i}]") for i, s in enumerate(streams)]
        if not self.streams:
            raise ConfigError("streams: at least one query is needed")
        for s in self.streams:
            if "$cursor" not in s.query:
                raise ConfigError(f"stream {s.name!r}: the query must take a $cursor variable "
                                  "(after: $cursor) for pagination")
            if sync_mode == "full_refresh":
                s.incremental = None
        self.max_throttled = max_throttled
        self.throttle = CostThrottle()

    def extra_metrics(self) -> dict[str, Any]:
        return {**super().extra_metrics(), "throttled": self.throttle.throttled,
                "cost_waited_s": round(self.throttle.waited_seconds, 3)}

    async def discover(self) -> dict[str, Schema]:
        return {s.name: Schema(tuple(Column(n, ColumnType(t)) for n, t in s.schema.items()),
                               _pk(s)) for s in self.streams if s.schema}

    def _watermark(self, s: GraphqlStream, state: Any) -> ApiWatermark:
        inc = s.incremental
        assert inc is not None
        return ApiWatermark(inc.cursor_path, _pk(s), state, initial_value=inc.initial_value,
                            lag=inc.lag, lag_keys=inc.lag_keys)

    def next_pass(self, position: Any) -> Any | None:
        if not isinstance(position, dict) or not position.get("wm"):
            return None
        done = {s.name: self._watermark(s, position["wm"][s.name]).completed_state()
                for s in self.streams if s.incremental is not None and s.name in position["wm"]}
        return {"i": 0, "cursor": None, "wm": done}

    async def query(self, query: str, variables: Mapping[str, Any]) -> Any:
        """The ``data`` of one query, after throttling; errors raise."""
        throttled = 0
        while True:
            await self.throttle.wait()
            resp = await self.client.request("POST", "", json={"query": query,
                                                               "variables": dict(variables)})
            body = resp.body if isinstance(resp.body, Mapping) else {}
            self.throttle.learn(body.get("extensions"))
            errors = body.get("errors")
            if not errors:
                return body.get("data")
            codes = {str(find(e, "extensions.code")) for e in errors if isinstance(e, Mapping)}
            if codes == {"THROTTLED"}:
                throttled += 1
                self.throttle.throttled += 1
                if throttled > self.max_throttled:
                    raise HttpTransientError("GraphQL API still throttling", resp.status)
                await asyncio.sleep(max(self.throttle.needed_wait(), 0.05))
                continue
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, Mapping) else str(e)
                                 for e in errors[:5])
            partial = " (with partial data)" if body.get("data") else ""
            raise GraphqlError(f"GraphQL errors{partial}: {messages}")

    def read(self, position: Any | None) -> AsyncIterator[Batch]:
        return self.read_in_order(position, [s.name for s in self.streams], "cursor",
                                  self._read_stream)

    async def _read_stream(self, i: int, cursor: str | None,
                           wm_states: dict[str, Any]) -> AsyncIterator[Batch]:
        s = self.streams[i]
        variables = dict(s.variables)
        variables.setdefault("first", s.page_size)
        wm = None
        if s.incremental is not None:
            wm = self._watermark(s, wm_states.get(s.name))
            begin = wm.start_value()
            if begin is not None and s.incremental.start_param:
                value = as_param(begin, s.incremental.value_format)
                variables[s.incremental.start_param] = s.start_template.format(value=value)
        while True:
            data = await self.query(s.query, {**variables, "cursor": cursor})
            conn = find(data, s.connection_path)
            if not isinstance(conn, Mapping):
                raise GraphqlError(f"stream {s.name!r}: no connection at {s.connection_path!r}")
            rows = _nodes(conn)
            if wm is not None:
                rows = wm.admit(rows)
                wm_states[s.name] = wm.state()
            info = conn.get("pageInfo") or {}
            more = bool(info.get("hasNextPage")) and bool(info.get("endCursor"))
            cursor = info.get("endCursor") if more else None
            position = {"i": i, "cursor": cursor, "wm": dict(wm_states)} if more \
                else {"i": i + 1, "cursor": None, "wm": dict(wm_states)}
            yield Batch(rows, stream=s.name, position=position)
            if not more:
                return


def _pk(s: GraphqlStream) -> tuple[str, ...]:
    return (s.primary_key,) if isinstance(s.primary_key, str) else tuple(s.primary_key)


def _nodes(conn: Mapping[str, Any]) -> list[Row]:
    if isinstance(conn.get("nodes"), list):
        return [n for n in conn["nodes"] if isinstance(n, dict)]
    return [e["node"] for e in conn.get("edges") or () if isinstance(e, Mapping)
            and isinstance(e.get("node"), dict)]
