"""The declarative configuration of HTTP API sources, as typed structs (no driver imported).

Names follow dlt's ``rest_api`` source where one exists (``client``, ``base_url``, ``auth``,
``paginator`` types ``json_link`` / ``header_link`` / ``offset`` / ``page_number`` /
``cursor`` / ``header_cursor`` / ``single_page``, ``resources``, ``resource_defaults``,
``endpoint.path`` / ``params`` / ``data_selector``, ``incremental.cursor_path`` /
``start_param`` / ``initial_value`` / ``lag``, ``{type: resolve}`` parent parameters,
``include_from_parent``, ``response_actions``) and Airbyte's low-code manifest for the request
budget (``call_limit``, ``period``, ``ratelimit_remaining_header``, ``ratelimit_reset_header``,
``status_codes_for_ratelimit_hit``) and response actions (``success``, ``ignore``, ``fail``,
``retry``, ``rate_limited``).

Secrets (tokens, passwords, keys) are :data:`Secret` values: a literal (prefer ``${VAR}`` in
job files, which is masked in all output), ``{env: NAME}`` or ``{file: path}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from etlsync.core.errors import ConfigError


class SecretRef(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a secret comes from: an environment variable or a file (its content, stripped)."""

    env: Annotated[str | None, Meta(description="Environment variable holding the secret")] = None
    file: Annotated[str | None, Meta(description="File holding the secret")] = None


Secret = str | SecretRef
"""A secret: a literal string, ``{env: NAME}`` or ``{file: path}``."""


class _Tagged(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    pass


# -- auth -------------------------------------------------------------------------------------

class BearerAuth(_Tagged, tag="bearer"):
    """``Authorization: Bearer <token>``."""

    token: Secret


class ApiKeyAuth(_Tagged, tag="api_key"):
    """An API key in a header or a query parameter."""

    api_key: Secret
    name: str = "Authorization"
    location: Literal["header", "query"] = "header"


class BasicAuth(_Tagged, tag="http_basic"):
    """HTTP basic authentication."""

    username: Secret
    password: Secret = ""


class OAuth2ClientCredentials(_Tagged, tag="oauth2_client_credentials"):
    """OAuth 2.0 client credentials grant (RFC 6749 section 4.4); with ``refresh_token`` the
    refresh-token grant (section 6) instead. Tokens are cached and renewed before expiry."""

    access_token_url: str
    client_id: Secret
    client_secret: Secret
    refresh_token: Secret | None = None
    scope: str | None = None
    access_token_request_data: dict[str, str] = {}
    client_auth: Literal["body", "basic"] = "body"
    default_token_expiration: float = 3600.0
    refresh_before: float = 60.0


class OAuth2Refresh(OAuth2ClientCredentials, tag="oauth2_refresh_token"):
    """The refresh-token grant (the same fields; ``refresh_token`` is required)."""


class JwtBearerAuth(_Tagged, tag="oauth2_jwt_bearer"):
    """A signed-JWT grant (RFC 7523): service accounts. ``credentials`` names a Google-style
    service-account JSON file (``client_email``, ``private_key``, ``private_key_id``,
    ``token_uri``), or give ``issuer`` / ``private_key`` / ``access_token_url`` directly."""

    credentials: Secret | None = None
    issuer: str | None = None
    private_key: Secret | None = None
    private_key_id: str | None = None
    access_token_url: str | None = None
    scope: str | None = None
    audience: str | None = None
    subject: str | None = None
    algorithm: str = "RS256"
    lifetime: float = 3600.0
    refresh_before: float = 60.0


Auth = (BearerAuth | ApiKeyAuth | BasicAuth | OAuth2ClientCredentials | OAuth2Refresh
        | JwtBearerAuth)


# -- paginators -------------------------------------------------------------------------------

class JsonLinkPaginator(_Tagged, tag="json_link"):
    """The next page's URL at ``next_url_path`` in the body."""

    next_url_path: str = "next"


class HeaderLinkPaginator(_Tagged, tag="header_link"):
    """The next page's URL in the ``Link`` header (RFC 8288), relation ``links_next_key``."""

    links_next_key: str = "next"


class OffsetPaginator(_Tagged, tag="offset"):
    """``offset`` / ``limit`` parameters; stops on an empty or short page, ``total_path``
    reached, or ``has_more_path`` false."""

    limit: int = 100
    offset: int = 0
    offset_param: str = "offset"
    limit_param: str = "limit"
    total_path: str | None = None
    has_more_path: str | None = None
    maximum_offset: int | None = None
    stop_after_empty_page: bool = True


class PageNumberPaginator(_Tagged, tag="page_number"):
    """A page number parameter; the same stop conditions as ``offset`` (``total_path`` is
    the number of pages)."""

    base_page: int = 1
    page: int | None = None
    page_param: str = "page"
    page_size: int | None = None
    page_size_param: str | None = None
    total_path: str | None = None
    has_more_path: str | None = None
    maximum_page: int | None = None
    stop_after_empty_page: bool = True


class CursorPaginator(_Tagged, tag="cursor"):
    """A cursor from the body (``cursor_path``) or from the last record's field
    (``record_cursor_field``, e.g. Stripe's ``starting_after`` = the last ``id``) sent as
    ``cursor_param``; stops when the cursor is missing or ``has_more_path`` is false."""

    cursor_path: str | None = "cursors.next"
    cursor_param: str = "cursor"
    record_cursor_field: str | None = None
    has_more_path: str | None = None


class HeaderCursorPaginator(_Tagged, tag="header_cursor"):
    """A cursor in a response header (``cursor_key``) sent as ``cursor_param``."""

    cursor_key: str = "next"
    cursor_param: str = "cursor"


class SinglePagePaginator(_Tagged, tag="single_page"):
    """One request, no pagination."""


Paginator = (JsonLinkPaginator | HeaderLinkPaginator | OffsetPaginator | PageNumberPaginator
             | CursorPaginator | HeaderCursorPaginator | SinglePagePaginator)
PAGINATOR_NAMES = ("json_link", "header_link", "offset", "page_number", "cursor",
                   "header_cursor", "single_page")


# -- rate limits, retries, response actions ---------------------------------------------------

class Budget(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A per-API request budget: at most ``call_limit`` requests in any ``period`` seconds
    (counting requests in flight; ``fixed_window`` is enforced the same, strictest way),
    plus what the API reports in its remaining/reset headers."""

    call_limit: Annotated[int, Meta(ge=1)] | None = None
    period: Annotated[float, Meta(gt=0)] = 1.0
    policy: Literal["moving_window", "fixed_window"] = "moving_window"
    margin: Annotated[float, Meta(ge=0)] = 0.005
    """Seconds added to every window (clock reads on both sides)."""
    ratelimit_remaining_header: str | None = None
    ratelimit_reset_header: str | None = None
    reset_unit: Literal["seconds", "milliseconds", "epoch_seconds", "epoch_milliseconds"] = \
        "seconds"
    status_codes_for_ratelimit_hit: list[int] = msgspec.field(default_factory=lambda: [429])


class Retry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Retries of transient failures (etlsync.resilience.RetryPolicy) and a circuit breaker."""

    max_attempts: int | None = 8
    base_delay: float = 0.2
    max_delay: float = 30.0
    max_elapsed: float | None = 300.0
    breaker_failure_threshold: int | None = 10
    breaker_reset_timeout: float = 5.0


class ResponseAction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a response matching ``status_code`` (one or several) and/or ``content`` (a
    substring of the body) means."""

    action: Literal["success", "ignore", "fail", "retry", "rate_limited"]
    status_code: int | list[int] | None = None
    content: str | None = None


class Tls(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """TLS: certificate verification, a CA bundle, a client certificate."""

    verify: bool = True
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


class Client(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The API: its base URL, headers, auth, default paginator, budget and retries."""

    base_url: str
    headers: dict[str, str] = {}
    auth: Auth | None = None
    paginator: Paginator | str | None = None
    timeout: Annotated[float, Meta(gt=0)] = 60.0
    tls: Tls = msgspec.field(default_factory=Tls)
    budget: Budget | None = None
    retry: Retry = msgspec.field(default_factory=Retry)
    max_concurrency: Annotated[int, Meta(ge=1)] = 4
    response_actions: list[ResponseAction] = []


# -- resources --------------------------------------------------------------------------------

class Resolve(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type",
              tag="resolve"):
    """A parameter taken from each record of a parent resource."""

    resource: str
    field: str


class Incremental(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Incremental reads: the records' ``cursor_path`` value reached becomes the watermark
    (ties handled by primary key, etlsync.core.incremental), sent back as ``start_param``
    (minus ``lag``, a lookback window: seconds for timestamps, units for numbers)."""

    cursor_path: str
    start_param: str | None = None
    initial_value: Any = None
    lag: Annotated[float, Meta(ge=0)] = 0.0
    value_format: Literal["same", "epoch_seconds", "iso"] = "same"
    """How the start value is sent: as the records hold it, or converted."""
    lag_keys: Annotated[int, Meta(ge=0)] = 10_000
    """Keys remembered inside the lookback window, so re-read records are not re-delivered."""


class Endpoint(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: str | None = None
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, Any] = {}
    json: dict[str, Any] | None = None
    headers: dict[str, str] = {}
    data_selector: str | None = None
    paginator: Paginator | str | None = None
    incremental: Incremental | None = None
    response_actions: list[ResponseAction] = []


class Resource(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    endpoint: Endpoint | str | None = None
    primary_key: str | list[str] | None = None
    include_from_parent: list[str] = []
    selected: bool = True
    schema: dict[str, str] | None = None
    """Column name -> logical type (etlsync.core.schema.ColumnType), for discover()."""


def convert(value: Any, kind: Any, where: str) -> Any:
    """``value`` as ``kind``; errors name ``where`` and the path inside it."""
    try:
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc).replace("`$", f"`{where}").replace("`", "")
        raise ConfigError(f"{where}: {text}") from None


def paginator_of(value: Paginator | str | dict[str, Any] | None, where: str) -> Paginator | None:
    """A paginator from a struct, a mapping or a bare type name (``"header_link"``)."""
    if value is None or isinstance(value, msgspec.Struct):
        return value
    if isinstance(value, str):
        if value == "auto":
            return None
        if value not in PAGINATOR_NAMES:
            raise ConfigError(f"{where}: unknown paginator {value!r}; expected one of "
                              f"{', '.join(PAGINATOR_NAMES)}")
        value = {"type": value}
    result: Paginator = convert(value, Paginator, where)
    return result
