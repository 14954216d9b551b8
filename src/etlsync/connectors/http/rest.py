"""RestSource: the declarative REST API source every preset builds on.

A job names a ``client`` (base URL, headers, auth, paginator, budget, retries) and
``resources`` (path, params, record selector, primary key, paginator, incremental settings),
with ``resource_defaults`` shared by all, in the shape dlt's ``rest_api`` source uses. A
resource whose params hold ``{type: resolve, resource: orders, field: id}`` (or whose path
holds ``{resources.orders.id}``) is a child: it is read for every record of its parent, with
``max_concurrency`` requests in flight, and emitted in the parent's order.

Positions: after each page ``{"i": resource index, "page": the next page's request, "wm":
{resource: incremental state}}``, so an interrupted run resumes at the page it stopped at
(a parent's page is a resume point only once its children are read: the batches before that
carry no position). The end of the pass carries every resource's watermark into the next.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from etlsync.connectors.http import config as cfg
from etlsync.connectors.http.client import UsesClient
from etlsync.connectors.http.incremental import ApiWatermark, as_param
from etlsync.connectors.http.paginate import (
    PageState,
    find,
    first_page,
    next_page,
    select_records,
)
from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.schema import Column, ColumnType, Schema
from etlsync.core.stages import Source

_PARENT_REF = re.compile(r"\{resources\.([A-Za-z0-9_\-]+)\.([^}]+)\}")


@dataclass
class ResolvedResource:
    """One resource with its defaults merged in, and where it sits in the parent tree."""

    config: cfg.Resource
    endpoint: cfg.Endpoint
    paginator: cfg.Paginator | None
    primary_key: tuple[str, ...]
    parent: str | None = None
    resolve: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Parameter or placeholder -> (parent resource, parent field)."""
    children: list[ResolvedResource] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.config.name


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) \
            else v
    return out


def resolve_resources(resources: Sequence[str | Mapping[str, Any]],
                      defaults: Mapping[str, Any] | None, client: cfg.Client,
                      where: str = "resources") -> list[ResolvedResource]:
    """Resources with defaults merged and parents linked; the top-level ones returned."""
    by_name: dict[str, ResolvedResource] = {}
    order: list[ResolvedResource] = []
    for i, raw in enumerate(resources):
        spot = f"{where}[{i}]"
        item: dict[str, Any] = {"name": raw, "endpoint": {"path": raw}} if isinstance(raw, str) \
            else dict(raw)
        if isinstance(item.get("endpoint"), str):
            item["endpoint"] = {"path": item["endpoint"]}
        merged = _merge(defaults or {}, item)
        res: cfg.Resource = cfg.convert(merged, cfg.Resource, spot)
        endpoint = res.endpoint if isinstance(res.endpoint, cfg.Endpoint) else cfg.Endpoint()
        if endpoint.path is None:
            endpoint.path = res.name
        paginator = cfg.paginator_of(endpoint.paginator if endpoint.paginator is not None
                                     else client.paginator, f"{spot}.endpoint.paginator")
        pk = res.primary_key
        r = ResolvedResource(res, endpoint, paginator,
                             (pk,) if isinstance(pk, str) else tuple(pk or ()))
        for name, value in endpoint.params.items():
            if isinstance(value, Mapping) and value.get("type") == "resolve":
                ref: cfg.Resolve = cfg.convert(value, cfg.Resolve, f"{spot}.endpoint.params.{name}")
                r.resolve[name] = (ref.resource, ref.field)
        for m in _PARENT_REF.finditer(endpoint.path):
            r.resolve[m.group(0)] = (m.group(1), m.group(2))
        parents = {p for p, _ in r.resolve.values()}
        if len(parents) > 1:
            raise ConfigError(f"{spot}: a resource resolves from one parent, not {sorted(parents)}")
        if res.name in by_name:
            raise ConfigError(f"{spot}.name: resource {res.name!r} is defined twice")
        r.parent = next(iter(parents), None)
        by_name[res.name] = r
        order.append(r)
    top: list[ResolvedResource] = []
    for i, r in enumerate(order):
        if r.parent is None:
            top.append(r)
            continue
        parent = by_name.get(r.parent)
        if parent is None:
            raise ConfigError(f"{where}[{i}]: parent resource {r.parent!r} is not defined "
                              f"(resources: {', '.join(by_name)})")
        if r.endpoint.incremental is not None:
            raise ConfigError(f"{where}[{i}].endpoint.incremental: child resources are read "
                              "in full for every new parent record; put incremental on the parent")
        parent.children.append(r)
    return top


def _as_row(record: Any) -> Row:
    return record if isinstance(record, dict) else {"value": record}


class RestSource(UsesClient, Source):
    """Records of REST API resources, page by page (see the module docstring).

    :param client: base URL, headers, auth, paginator, budget, retries, TLS (a mapping of
        :class:`~etlsync.connectors.http.config.Client` fields).
    :param resources: names (``"posts"``: path and stream) or mappings
        (:class:`~etlsync.connectors.http.config.Resource`).
    :param resource_defaults: merged under every resource.
    :param sync_mode: ``None`` as each resource says; ``full_refresh`` ignores incremental
        settings; ``incremental`` needs one on every top-level resource (or ``cursor_field``).
    """

    name = "rest"
    capabilities = frozenset({Capability.PASSES})

    def __init__(self, client: Mapping[str, Any], resources: Sequence[str | Mapping[str, Any]],
                 *, resource_defaults: Mapping[str, Any] | None = None,
                 sync_mode: str | None = None, cursor_field: str | None = None,
                 primary_key: Sequence[str] | str | None = None) -> None:
        self.client_config: cfg.Client = cfg.convert(dict(client), cfg.Client, "client")
        defaults = dict(resource_defaults or {})
        if primary_key and "primary_key" not in defaults:
            defaults["primary_key"] = primary_key if isinstance(primary_key, str) \
                else list(primary_key)
        self.resources = resolve_resources(resources, defaults, self.client_config)
        if not self.resources:
            raise ConfigError("resources: at least one resource is needed")
        if sync_mode not in (None, "full_refresh", "incremental"):
            raise ConfigError(f"sync_mode: {sync_mode!r} is not full_refresh or incremental")
        for i, r in enumerate(self.resources):
            inc = r.endpoint.incremental
            if sync_mode == "full_refresh":
                r.endpoint.incremental = None
            elif sync_mode == "incremental" and inc is None:
                if cursor_field is None:
                    raise ConfigError(f"resources[{i}] ({r.name}): incremental sync needs "
                                      "endpoint.incremental or cursor_field")
                r.endpoint.incremental = cfg.Incremental(cursor_path=cursor_field)

    # -- stage contract --------------------------------------------------------------------
    def all_resources(self) -> list[ResolvedResource]:
        out: list[ResolvedResource] = []
        stack = list(reversed(self.resources))
        while stack:
            r = stack.pop()
            out.append(r)
            stack.extend(reversed(r.children))
        return out

    async def discover(self) -> dict[str, Schema]:
        out = {}
        for r in self.all_resources():
            if r.config.schema and r.config.selected:
                cols = tuple(Column(n, ColumnType(t)) for n, t in r.config.schema.items())
                out[r.name] = Schema(cols, r.primary_key)
        return out

    def next_pass(self, position: Any) -> Any | None:
        """The next pass starts over, from the watermarks this one reached."""
        if not isinstance(position, dict) or not position.get("wm"):
            return None
        done = {}
        for r in self.resources:
            state = position["wm"].get(r.name)
            if state is not None and r.endpoint.incremental is not None:
                done[r.name] = self._watermark(r, state).completed_state()
        return {"i": 0, "page": None, "wm": done}

    def _watermark(self, r: ResolvedResource, state: Any) -> ApiWatermark:
        inc = r.endpoint.incremental
        assert inc is not None
        return ApiWatermark(inc.cursor_path, r.primary_key, state, initial_value=inc.initial_value,
                            lag=inc.lag, lag_keys=inc.lag_keys)

    def read(self, position: Any | None) -> AsyncIterator[Batch]:
        return self.read_in_order(position, [r.name for r in self.resources], "page",
                                  self._read_top)

    # -- reading -----------------------------------------------------------------------------
    def first_request(self, r: ResolvedResource, wm: ApiWatermark | None) -> PageState:
        params = {k: v for k, v in r.endpoint.params.items() if k not in r.resolve}
        inc = r.endpoint.incremental
        if wm is not None and inc is not None and inc.start_param is not None:
            start = wm.start_value()
            if start is not None:
                params[inc.start_param] = as_param(start, inc.value_format)
        assert r.endpoint.path is not None
        return first_page(r.paginator, r.endpoint.path, params)

    async def fetch_page(self, r: ResolvedResource, state: PageState
                         ) -> tuple[list[Row], PageState | None]:
        """One page of ``r``: its records and the request for the next page."""
        ep = r.endpoint
        resp = await self.client.request(ep.method, state["url"], params=state["params"],
                                         json=ep.json, headers=ep.headers,
                                         actions=ep.response_actions)
        if resp.ignored:
            return [], None
        records = select_records(resp.body, ep.data_selector, f"resource {r.name!r}")
        rows = records if all(type(x) is dict for x in records) else [_as_row(x) for x in records]
        return rows, next_page(r.paginator, state, resp.body, resp.headers, rows)

    async def _read_top(self, i: int, state: PageState | None,
                        wm_states: dict[str, Any]) -> AsyncIterator[Batch]:
        r = self.resources[i]
        wm = None
        if r.endpoint.incremental is not None:
            wm = self._watermark(r, wm_states.get(r.name))
        request: PageState | None = state if state is not None else self.first_request(r, wm)
        while request is not None:
            rows, nxt = await self.fetch_page(r, request)
            if wm is not None:
                rows = wm.admit(rows)
                wm_states[r.name] = wm.state()
            batches = [Batch(rows, stream=r.name)] if r.config.selected else []
            if r.children and rows:
                batches.extend(await self._children(r, rows))
            position = {"i": i, "page": nxt, "wm": dict(wm_states)} if nxt is not None \
                else {"i": i + 1, "page": None, "wm": dict(wm_states)}
            if not batches:
                batches = [Batch([], stream=r.name)]
            batches[-1].position = position
            for batch in batches:
                yield batch
            request = nxt

    async def _children(self, parent: ResolvedResource, rows: list[Row]) -> list[Batch]:
        """Every child resource's records for ``rows``, in parent order, ``max_concurrency``
        requests at a time."""
        out: list[Batch] = []
        for child in parent.children:
            tasks = [asyncio.ensure_future(self._child_rows(child, row)) for row in rows]
            try:
                results = await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            child_rows = [row for part in results for row in part]
            if child.config.selected:
                out.append(Batch(child_rows, stream=child.name))
            if child.children and child_rows:
                out.extend(await self._children(child, child_rows))
        return out

    async def _child_rows(self, child: ResolvedResource, parent_row: Row) -> list[Row]:
        path = child.endpoint.path
        assert path is not None
        params = {k: v for k, v in child.endpoint.params.items() if k not in child.resolve}
        for key, (_, fld) in child.resolve.items():
            value = find(parent_row, fld)
            if value is None:
                raise ConfigError(f"resource {child.name!r}: parent record has no {fld!r} "
                                  f"(keys: {sorted(parent_row)[:20]})")
            if key.startswith("{"):
                path = path.replace(key, str(value))
            elif "{" + key + "}" in path:
                path = path.replace("{" + key + "}", str(value))
            else:
                params[key] = value
        extra = {f"_{child.parent}_{f}": find(parent_row, f) for f in child.config.include_from_parent}
        request: PageState | None = first_page(child.paginator, path, params)
        out: list[Row] = []
        async with self.client.semaphore:
            while request is not None:
                rows, request = await self.fetch_page(child, request)
                if extra:
                    rows = [{**row, **extra} for row in rows]
                out.extend(rows)
        return out
