"""The HTTP client every HTTP connector shares: one aiohttp session per API, its auth, its
request budget, retries with backoff, a circuit breaker and response actions.

A response's meaning comes from the first matching response action (status code and/or a
substring of the body), else the defaults: 2xx success; a status in the budget's
``status_codes_for_ratelimit_hit`` (429) rate limited; 408, 425, another 429 and 5xx
retried with backoff; 401 once
more after renewing a token; any other status fails. ``ignore`` makes the response an empty
page. Rate limited responses pause every request of the API (``Retry-After``, else the
reset header, else the budget period) and are retried.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from etlsync.connectors.http import config as cfg
from etlsync.connectors.http.auth import Authenticator, TokenAuth, make_auth
from etlsync.connectors.http.budget import RequestBudget
from etlsync.connectors.http.secrets import mask
from etlsync.core.batch import Batch
from etlsync.log import get_logger
from etlsync.resilience import (
    CircuitBreaker,
    PermanentError,
    RetryPolicy,
    TransientError,
)
from etlsync.resilience.classify import parse_retry_after

_decode = msgspec.json.Decoder().decode
StreamReader = Callable[[int, Any, dict[str, Any]], AsyncIterator[Batch]]
"""``read_one(index, resume, watermarks)``: one stream's batches."""


@dataclass(slots=True)
class Response:
    """A response whose status the client accepted."""

    status: int
    headers: Mapping[str, str]
    body: Any
    url: str
    ignored: bool = False
    text: str = ""


class HttpError(PermanentError):
    """A response the API's rules call a failure (``status``: the HTTP status)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HttpTransientError(TransientError):
    def __init__(self, message: str, status: int | None = None, *,
                 retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


@dataclass(slots=True)
class ClientStats:
    requests: int = 0
    retries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    token_requests: int = 0


def ssl_context(tls: cfg.Tls) -> ssl.SSLContext | bool:
    """The SSL context for ``tls`` (``True``: the default verified context)."""
    if not tls.verify:
        return False
    if tls.ca_file is None and tls.client_cert is None:
        return True
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.client_cert is not None:
        context.load_cert_chain(tls.client_cert, tls.client_key)
    return context


def _matches(action: cfg.ResponseAction, status: int, text: str) -> bool:
    codes = action.status_code
    if codes is not None and status not in (codes if isinstance(codes, list) else [codes]):
        return False
    return action.content is None or action.content in text


class HttpClient:
    """Requests against one API (``client.base_url``), shared by its resources.

    :param where: the config path, for error messages.
    """

    def __init__(self, client: cfg.Client, *, where: str = "client",
                 budget: RequestBudget | None = None) -> None:
        self.config = client
        self.base_url = client.base_url.rstrip("/") + "/"
        self.budget = budget or RequestBudget(client.budget)
        self.auth: Authenticator = make_auth(client.auth, self._post_form, f"{where}.auth")
        retry = client.retry
        self.retry = RetryPolicy(max_attempts=retry.max_attempts, base_delay=retry.base_delay,
                                 max_delay=retry.max_delay, max_elapsed=retry.max_elapsed)
        self.breaker = None if retry.breaker_failure_threshold is None else CircuitBreaker(
            retry.breaker_failure_threshold, retry.breaker_reset_timeout,
            name=mask(self.base_url))
        self.stats = ClientStats()
        self.log = get_logger(api=mask(self.base_url))
        self._session: aiohttp.ClientSession | None = None
        self.semaphore = asyncio.Semaphore(client.max_concurrency)

    # -- session ---------------------------------------------------------------------------
    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": "etlsync", **self.config.headers}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                connector=aiohttp.TCPConnector(ssl=ssl_context(self.config.tls),
                                               limit=max(8, self.config.max_concurrency * 2)),
                json_serialize=lambda v: msgspec.json.encode(v).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> str:
        """``path`` against the base URL (absolute URLs pass unchanged)."""
        if path.startswith(("http://", "https://")):
            return path
        if not path:
            return self.config.base_url
        return self.base_url + path.lstrip("/")

    async def _post_form(self, url: str, form: dict[str, str], headers: dict[str, str]
                         ) -> tuple[int, Any]:
        session = await self.session()
        self.stats.token_requests += 1
        try:
            async with session.post(url, data=form, headers=headers) as resp:
                raw = await resp.read()
                try:
                    body = _decode(raw) if raw else None
                except msgspec.DecodeError:
                    body = None
                return resp.status, body
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(mask(f"token request to {url} failed: "
                                      f"{type(exc).__name__}: {exc}")) from None

    # -- requests --------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      json: Any = None, data: bytes | str | None = None,
                      headers: Mapping[str, str] | None = None,
                      actions: Sequence[cfg.ResponseAction] = (),
                      decode: bool = True, budgets: Sequence[RequestBudget] = ()) -> Response:
        """Send a request with retries; the first response the rules accept.

        :raises HttpError: a response the rules call a failure (permanent).
        :raises etlsync.resilience.RetryExhausted: transient failures outlasted the policy.
        :param budgets: further budgets this request counts against (an endpoint's own).
        """
        url = self.url(path)
        rules = [*actions, *self.config.response_actions]

        async def attempt() -> Response:
            if self.breaker is not None:
                return await self.breaker.call(lambda: self._once(
                    method, url, params, json, data, headers, rules, decode, budgets))
            return await self._once(method, url, params, json, data, headers, rules, decode,
                                    budgets)

        async def on_retry(n: int, exc: BaseException, verdict: Any, delay: float) -> None:
            self.stats.retries += 1
            log = self.log.warning if n >= 3 else self.log.info
            log("retrying request", method=method, url=mask(url), attempt=n,
                delay=round(delay, 3), error=mask(str(exc))[:200])

        return await self.retry.call(attempt, on_retry=on_retry)

    async def _once(self, method: str, url: str, params: Mapping[str, Any] | None, json: Any,
                    data: bytes | str | None, headers: Mapping[str, str] | None,
                    rules: Sequence[cfg.ResponseAction], decode: bool,
                    budgets: Sequence[RequestBudget] = ()) -> Response:
        hdrs: dict[str, str] = dict(headers or {})
        query: dict[str, Any] = dict(params or {})
        await self.auth.apply(hdrs, query)
        session = await self.session()
        every = (*budgets, self.budget)
        for budget in every:
            await budget.acquire()
        released = False
        self.stats.requests += 1
        try:
            async with session.request(method, url, params=_query(query) or None, json=json,
                                       data=data, headers=hdrs) as resp:
                for budget in every:
                    budget.release()
                released = True
                raw = await resp.read()
                status, rheaders, final = resp.status, resp.headers, str(resp.url)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise HttpTransientError(mask(f"{method} {url}: {type(exc).__name__}: {exc}")) \
                from None
        finally:
            if not released:
                for budget in every:
                    budget.release()
        self.stats.statuses[status] += 1
        text = ""
        action = None
        for rule in rules:
            if rule.content is not None and not text:
                text = raw.decode("utf-8", "replace")
            if _matches(rule, status, text):
                action = rule.action
                break
        retry_after = parse_retry_after(rheaders.get("Retry-After"))
        limited = status in self.budget.spec.status_codes_for_ratelimit_hit
        for budget in every:
            budget.observe(status, rheaders, retry_after)
        if action is None:
            if 200 <= status < 300:
                action = "success"
            elif limited:
                action = "rate_limited"
            elif status in (408, 425, 429) or status >= 500:
                action = "retry"
            elif status == 401 and isinstance(self.auth, TokenAuth):
                self.auth.invalidate()
                action = "retry"
            else:
                action = "fail"
        where = mask(f"{method} {final}")
        if action == "success":
            if not decode:
                return Response(status, rheaders, None, final, text=raw.decode("utf-8", "replace"))
            try:
                body = _decode(raw) if raw else None
            except msgspec.DecodeError as exc:
                raise HttpTransientError(f"{where}: the body is not JSON ({exc})", status) \
                    from None
            return Response(status, rheaders, body, final)
        if action == "ignore":
            return Response(status, rheaders, None, final, ignored=True)
        snippet = mask(raw[:500].decode("utf-8", "replace"))
        if action == "fail":
            raise HttpError(f"{where}: HTTP {status}: {snippet}", status)
        if action == "rate_limited":
            if retry_after is None and not limited:
                self.budget.pause(self.budget.reset_seconds(rheaders) or self.budget.spec.period)
            # the budget now holds every request until the reset: retry without more delay
            raise HttpTransientError(f"{where}: rate limited (HTTP {status})", status,
                                     retry_after=0.0)
        raise HttpTransientError(f"{where}: HTTP {status}: {snippet}", status,
                                 retry_after=retry_after)

    def extra_metrics(self) -> dict[str, Any]:
        return {"requests": self.stats.requests, "retries": self.stats.retries,
                "budget_waited_s": round(self.budget.waited_seconds, 3),
                "rate_limit_pauses": self.budget.pauses,
                "statuses": dict(self.stats.statuses)}


def _query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query parameters as aiohttp takes them: lists repeat the key, booleans are words."""
    out: list[tuple[str, str]] = []
    for k, v in params.items():
        if v is None:
            continue
        for item in v if isinstance(v, list | tuple) else (v,):
            out.append((k, "true" if item is True else "false" if item is False else str(item)))
    return out


class UsesClient:
    """A stage that talks to one API through an :class:`HttpClient` made on first use from
    ``client_config`` (secrets are resolved then, not when the stage is built)."""

    client_config: cfg.Client
    _client: HttpClient | None = None

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(self.client_config)
        return self._client

    def extra_metrics(self) -> dict[str, Any]:
        """The client's counters, for ``pipeline.metrics`` and the run summary."""
        return self._client.extra_metrics() if self._client is not None else {}

    async def read_in_order(self, position: Any, names: Sequence[str], resume_key: str,
                            read_one: StreamReader) -> AsyncIterator[Batch]:
        """Read streams ``names`` one after the other from ``position`` (``{"i": index,
        resume_key: where in stream i, "wm": {stream: watermark}}``), then end the pass."""
        pos = dict(position) if isinstance(position, dict) else {}
        start = int(pos.get("i", 0))
        wm_states: dict[str, Any] = dict(pos.get("wm") or {})
        try:
            for i in range(start, len(names)):
                resume = pos.get(resume_key) if i == start else None
                async for batch in read_one(i, resume, wm_states):
                    yield batch
        finally:
            await self.client.close()
        yield Batch([], stream=names[-1], end_of_pass=True,
                    position={"i": len(names), resume_key: None, "wm": dict(wm_states)})
