"""Record selectors and paginators.

A path is dotted (``data.items``), optionally JSONPath-style (``$.data.items``, ``[*]`` and
``[0]`` steps). A paginator turns one response into the request for the next page, as a
JSON-able *page state* ``{"url": ..., "params": {...}}``, so a position can hold it and a new
run can resume at that page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from etlsync.connectors.http import config as cfg
from etlsync.core.errors import DataError

_STEP = re.compile(r"\[(\*|-?\d+)\]|([^.\[\]]+)")
_AUTO_KEYS = ("data", "results", "items", "records", "entries", "values", "nodes")

PageState = dict[str, Any]
"""``{"url": path or absolute URL, "params": query parameters}``."""


def steps(path: str) -> list[str]:
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    return [m.group(1) or m.group(2) for m in _STEP.finditer(text)]


def find(body: Any, path: str | None) -> Any:
    """The value at ``path`` (``None`` when absent)."""
    if not path:
        return body
    value = body
    for step in steps(path):
        if step == "*":
            continue
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and step.lstrip("-").isdigit():
            i = int(step)
            value = value[i] if -len(value) <= i < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


def select_records(body: Any, path: str | None, where: str) -> list[Any]:
    """The records of a page: the list at ``path``; without one, the body if it is a list,
    else the first list under a usual key (``data``, ``results``, ``items``, ...)."""
    if path is None:
        if isinstance(body, list):
            return body
        if isinstance(body, Mapping):
            for key in _AUTO_KEYS:
                if isinstance(body.get(key), list):
                    return list(body[key])
        if body is None:
            return []
        keys = sorted(body)[:20] if isinstance(body, Mapping) else type(body).__name__
        raise DataError(f"{where}: cannot find the records in the response; set data_selector "
                        f"(top-level keys: {keys})")
    found = find(body, path)
    if found is None:
        return []
    if isinstance(found, Mapping):
        return [found]
    if not isinstance(found, list):
        raise DataError(f"{where}: data_selector {path!r} points at a {type(found).__name__}, "
                        "not a list of records")
    return found


def parse_link_header(value: str | None) -> dict[str, str]:
    """``rel`` -> URL of an RFC 8288 ``Link`` header."""
    out: dict[str, str] = {}
    if not value:
        return out
    for part in re.finditer(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)", value):
        url, attrs = part.group(1), part.group(2)
        rel = re.search(r"rel\s*=\s*\"?([^\";,]+)\"?", attrs)
        if rel:
            for name in rel.group(1).split():
                out.setdefault(name, url)
    return out


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() not in ("", "false", "0", "no")
    return bool(value)


def first_page(paginator: cfg.Paginator | None, path: str, params: dict[str, Any]) -> PageState:
    """The request for the first page."""
    params = dict(params)
    if isinstance(paginator, cfg.OffsetPaginator):
        params[paginator.offset_param] = paginator.offset
        params[paginator.limit_param] = paginator.limit
    elif isinstance(paginator, cfg.PageNumberPaginator):
        params[paginator.page_param] = paginator.page if paginator.page is not None \
            else paginator.base_page
        if paginator.page_size_param and paginator.page_size:
            params[paginator.page_size_param] = paginator.page_size
    return {"url": path, "params": params}


def next_page(paginator: cfg.Paginator | None, state: PageState, body: Any,
              headers: Mapping[str, str], records: list[Any]) -> PageState | None:
    """The request for the page after ``state`` (``None``: this was the last page)."""
    params: dict[str, Any] = dict(state["params"])
    p = paginator
    if p is None:  # auto: a Link header, a next URL in the body, or one page
        link = parse_link_header(headers.get("Link")).get("next")
        if link:
            return {"url": link, "params": {}}
        nxt = body.get("next") if isinstance(body, Mapping) else None
        if isinstance(nxt, str) and nxt.startswith(("http://", "https://", "/")):
            return {"url": nxt, "params": {}}
        return None
    if isinstance(p, cfg.SinglePagePaginator):
        return None
    if isinstance(p, cfg.JsonLinkPaginator):
        nxt = find(body, p.next_url_path)
        return {"url": str(nxt), "params": {}} if nxt else None
    if isinstance(p, cfg.HeaderLinkPaginator):
        link = parse_link_header(headers.get("Link")).get(p.links_next_key)
        return {"url": link, "params": {}} if link else None
    if isinstance(p, cfg.HeaderCursorPaginator):
        cursor = headers.get(p.cursor_key)
        if not cursor:
            return None
        params[p.cursor_param] = cursor
        return {"url": state["url"], "params": params}
    if p.has_more_path is not None and not _truthy(find(body, p.has_more_path)):
        return None
    if isinstance(p, cfg.CursorPaginator):
        if p.record_cursor_field is not None:
            if not records:
                return None
            cursor = records[-1].get(p.record_cursor_field) if isinstance(records[-1], Mapping) \
                else None
        else:
            cursor = find(body, p.cursor_path)
        if cursor in (None, ""):
            return None
        params[p.cursor_param] = cursor
        return {"url": state["url"], "params": params}
    if not records and p.stop_after_empty_page:
        return None
    total = find(body, p.total_path) if p.total_path else None
    if isinstance(p, cfg.OffsetPaginator):
        offset = int(params.get(p.offset_param, p.offset)) + p.limit
        if total is not None and offset >= int(total):
            return None
        if p.maximum_offset is not None and offset >= p.maximum_offset:
            return None
        params[p.offset_param] = offset
        return {"url": state["url"], "params": params}
    page = int(params.get(p.page_param, p.base_page)) + 1
    if total is not None and page - p.base_page >= int(total):
        return None
    if p.maximum_page is not None and page > p.maximum_page:
        return None
    params[p.page_param] = page
    return {"url": state["url"], "params": params}
