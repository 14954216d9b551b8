"""The HTTP family: declarative REST, GraphQL, SOAP and webhook sources, the HTTP sink, and
the Stripe, Shopify, HubSpot and Google Sheets presets. No driver is imported here."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from etlsync.connectors.http.config import Secret
from etlsync.core.capabilities import Capability
from etlsync.manifest import Kind, Manifest, Options, StageType

_PASSES = frozenset({Capability.PASSES})
ClientField = Annotated[dict[str, Any], Meta(description=(
    "The API: base_url, headers, auth {type: bearer|api_key|http_basic|"
    "oauth2_client_credentials|oauth2_refresh_token|oauth2_jwt_bearer, ...}, paginator, "
    "budget {call_limit, period, ratelimit_remaining_header, ratelimit_reset_header}, retry, "
    "tls, max_concurrency, response_actions"))]
Retry = Annotated[dict[str, Any] | None, Meta(
    description="Retries: max_attempts, base_delay, max_delay, max_elapsed, breaker settings")]
Budget = Annotated[dict[str, Any] | None, Meta(
    description="The request budget (default: the API's documented limit)")]
TokenField = Annotated[Secret, Meta(description="The credential: ${VAR}, {env: NAME} or {file: path}")]


class RestOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("client", "resources")
    secrets: ClassVar[tuple[str, ...]] = ("client",)

    client: ClientField
    resources: Annotated[list[str | dict[str, Any]], Meta(description=(
        "Resources: names or {name, endpoint {path, method, params, json, data_selector, "
        "paginator, incremental {cursor_path, start_param, initial_value, lag}, "
        "response_actions}, primary_key, include_from_parent, selected, schema}"))]
    resource_defaults: Annotated[dict[str, Any] | None, Meta(
        description="Merged under every resource")] = None
    sync_mode: Annotated[Literal["full_refresh", "incremental"] | None, Meta(
        description="Override every resource's mode")] = None
    cursor_field: Annotated[str | None, Meta(
        description="Incremental: the cursor of resources without their own")] = None
    primary_key: Annotated[str | list[str] | None, Meta(
        description="Default primary key of the resources")] = None


class GraphqlOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("client", "streams")
    secrets: ClassVar[tuple[str, ...]] = ("client",)

    client: ClientField
    streams: Annotated[list[dict[str, Any]], Meta(description=(
        "Queries: {name, query (with $cursor, $first), connection_path, variables, "
        "page_size, primary_key, incremental, start_template}"))]
    sync_mode: Annotated[Literal["full_refresh", "incremental"] | None, Meta(
        description="full_refresh ignores incremental settings")] = None
    max_throttled: Annotated[int, Meta(ge=1, description="Throttle answers in a row before "
                                                         "giving up")] = 50


class SoapOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("wsdl", "operation")
    secrets: ClassVar[tuple[str, ...]] = ("client",)

    wsdl: Annotated[str, Meta(description="The WSDL's URL or file")]
    operation: Annotated[str, Meta(description="The operation to call")]
    records_path: Annotated[str, Meta(description="Where the records are in the reply")]
    params: Annotated[dict[str, Any] | None, Meta(
        description="Fixed arguments of the operation")] = None
    page_param: Annotated[str | None, Meta(description="The page (or offset) argument")] = "page"
    page_size_param: Annotated[str | None, Meta(description="The page size argument")] = \
        "pageSize"
    page_size: Annotated[int, Meta(ge=1, description="Records per page")] = 100
    first_page: Annotated[int, Meta(description="The first page's number")] = 1
    page_unit: Annotated[Literal["page", "offset"], Meta(
        description="page numbers, or record offsets")] = "page"
    stream: Annotated[str | None, Meta(description="Stream name (default: the operation)")] = None
    client: Annotated[dict[str, Any] | None, Meta(
        description="headers, auth, budget, retry, tls (as for rest)")] = None
    service: Annotated[str | None, Meta(description="The WSDL service, if several")] = None
    port: Annotated[str | None, Meta(description="The WSDL port, if several")] = None


class WebhookOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("journal",)
    paths: ClassVar[tuple[str, ...]] = ("journal",)
    secrets: ClassVar[tuple[str, ...]] = ("secret",)

    journal: Annotated[str, Meta(description="SQLite file events are persisted in")]
    secret: TokenField
    verify: Annotated[Literal["stripe", "shopify", "hubspot_v3", "hmac"], Meta(
        description="The signature scheme")] = "hmac"
    host: Annotated[str, Meta(description="Interface to bind")] = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535, description="Port to bind")] = 8787
    path: Annotated[str, Meta(description="The endpoint's path")] = "/webhook"
    stream: Annotated[str, Meta(description="Stream name")] = "events"
    signature_header: Annotated[str, Meta(description="hmac: the signature header")] = \
        "X-Signature"
    signature_encoding: Annotated[Literal["hex", "base64"], Meta(
        description="hmac: the digest's encoding")] = "hex"
    signature_prefix: Annotated[str, Meta(description="hmac: a prefix such as sha256=")] = ""
    id_path: Annotated[str | None, Meta(description="The event id in the body")] = None
    id_header: Annotated[str | None, Meta(description="The event id header")] = None
    public_url: Annotated[str | None, Meta(
        description="The URL senders use (HubSpot signs it)")] = None
    tolerance: Annotated[float, Meta(gt=0, description="Seconds a signature stays valid")] = 300.0
    batch_size: Annotated[int, Meta(ge=1, description="Events per batch")] = 500
    max_body: Annotated[int, Meta(ge=1, description="Largest body accepted (bytes)")] = 1_048_576
    dedup_seconds: Annotated[float, Meta(gt=0, description="How long event ids are kept to "
                                                           "recognise replays")] = 7 * 86400.0
    idle_timeout: Annotated[float | None, Meta(
        description="End the run after so many quiet seconds")] = None


class StripeOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("api_key",)
    secrets: ClassVar[tuple[str, ...]] = ("api_key",)

    api_key: TokenField
    streams: Annotated[list[Literal["customers", "charges", "invoices", "subscriptions",
                                    "payment_intents", "events"]], Meta(
        description="Objects to read")] = msgspec.field(default_factory=lambda: [
            "customers", "charges", "invoices", "subscriptions", "payment_intents", "events"])
    sync_mode: Annotated[Literal["full_refresh", "incremental"], Meta(
        description="incremental by created")] = "incremental"
    updates: Annotated[Literal["created", "events"], Meta(
        description="events: later passes read updates from /v1/events")] = "created"
    start_date: Annotated[int | None, Meta(description="Epoch seconds to start from")] = None
    page_size: Annotated[int, Meta(ge=1, le=100, description="limit per page")] = 100
    base_url: Annotated[str, Meta(description="The API")] = "https://api.stripe.com"
    window: Annotated[float, Meta(gt=0, description="Seconds per events window")] = 86400.0
    max_window_events: Annotated[int, Meta(ge=1, description="Events held per window")] = 10_000
    settle: Annotated[float, Meta(ge=0, description="Seconds events are given to appear")] = 5.0
    budget: Budget = None
    retry: Retry = None


class ShopifyOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("shop", "access_token")
    secrets: ClassVar[tuple[str, ...]] = ("access_token",)

    shop: Annotated[str, Meta(description="my-shop or my-shop.myshopify.com")]
    access_token: TokenField
    streams: Annotated[list[Literal["orders", "customers", "products", "inventory_items"]], Meta(
        description="Objects to read")] = msgspec.field(default_factory=lambda: [
            "orders", "customers", "products", "inventory_items"])
    api_version: Annotated[str, Meta(description="Admin API version")] = "2024-10"
    sync_mode: Annotated[Literal["full_refresh", "incremental"], Meta(
        description="incremental by updatedAt")] = "incremental"
    start_date: Annotated[str | None, Meta(description="ISO 8601 start")] = None
    lookback: Annotated[float, Meta(ge=0, description="Seconds re-read below the watermark")] = \
        3600.0
    page_size: Annotated[int, Meta(ge=1, le=250, description="first: per query")] = 100
    base_url: Annotated[str | None, Meta(description="The GraphQL endpoint (tests, proxies)")] = None
    max_concurrency: Annotated[int, Meta(ge=1, description="Queries in flight")] = 1


class HubspotOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("access_token",)
    secrets: ClassVar[tuple[str, ...]] = ("access_token",)

    access_token: TokenField
    streams: Annotated[list[Literal["contacts", "companies", "deals"]], Meta(
        description="Objects to read")] = msgspec.field(default_factory=lambda: [
            "contacts", "companies", "deals"])
    sync_mode: Annotated[Literal["full_refresh", "incremental"], Meta(
        description="incremental through the search endpoint")] = "incremental"
    properties: Annotated[dict[str, list[str]] | None, Meta(
        description="Properties per object (default: a standard set)")] = None
    start_date: Annotated[str | None, Meta(description="ISO 8601 start")] = None
    page_size: Annotated[int, Meta(ge=1, le=100, description="limit per page")] = 100
    base_url: Annotated[str, Meta(description="The API")] = "https://api.hubapi.com"
    search_cap: Annotated[int, Meta(ge=1, description="Results one search can page")] = 10_000
    budget: Budget = None
    search_rate: Annotated[float, Meta(gt=0, description="Search requests per second")] = 5.0
    retry: Retry = None


class SheetsCommon(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("spreadsheet_id", "credentials")
    secrets: ClassVar[tuple[str, ...]] = ("credentials",)

    spreadsheet_id: Annotated[str, Meta(description="The spreadsheet's id")]
    credentials: Annotated[Secret, Meta(
        description="Service-account JSON: a path, {file: path} or {env: NAME}")]
    base_url: Annotated[str, Meta(description="The API")] = "https://sheets.googleapis.com"
    token_url: Annotated[str | None, Meta(
        description="Token endpoint (default: the credentials' token_uri)")] = None
    retry: Retry = None
    budget: Budget = None


class SheetsSourceOptions(SheetsCommon, kw_only=True):
    ranges: Annotated[list[str], Meta(description="A1 ranges or sheet names")] = \
        msgspec.field(default_factory=lambda: ["Sheet1"])
    header_row: Annotated[bool, Meta(description="The first row names the columns")] = True
    value_render_option: Annotated[Literal["FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"],
                                   Meta(description="Typed, formatted or formula values")] = \
        "UNFORMATTED_VALUE"
    date_time_render_option: Annotated[Literal["SERIAL_NUMBER", "FORMATTED_STRING"], Meta(
        description="Dates as serial numbers or as shown")] = "FORMATTED_STRING"
    chunk_rows: Annotated[int, Meta(ge=1, description="Rows per request")] = 1000


class SheetsSinkOptions(SheetsCommon, kw_only=True):
    sheet: Annotated[str, Meta(description="The sheet (tab) written")] = "Sheet1"
    write_mode: Annotated[Literal["append", "overwrite", "update"], Meta(
        description="values.append, clear + batchUpdate, or batchUpdate at row_field")] = \
        "append"
    columns: Annotated[list[str] | None, Meta(description="Columns written, in order")] = None
    header: Annotated[bool, Meta(description="Write a header row")] = True
    value_input_option: Annotated[Literal["RAW", "USER_ENTERED"], Meta(
        description="Values stored as given, or parsed as if typed")] = "RAW"
    row_field: Annotated[str, Meta(description="update: the field with the row number")] = "_row"


class HttpSinkOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("client", "path")
    secrets: ClassVar[tuple[str, ...]] = ("client",)

    client: ClientField
    path: Annotated[str, Meta(description="Where batches go ({stream} is replaced)")] = ""
    method: Annotated[Literal["POST", "PUT", "PATCH"], Meta(description="HTTP method")] = "POST"
    format: Annotated[Literal["json", "ndjson"], Meta(description="Body format")] = "json"
    wrap: Annotated[str | None, Meta(description="json: send {wrap: [records]}")] = None
    max_records: Annotated[int, Meta(ge=1, description="Records per request")] = 500
    idempotency_header: Annotated[str | None, Meta(
        description="Header carrying the position-derived key")] = "Idempotency-Key"


_M = "etlsync.connectors.http"
MANIFEST = Manifest(
    family="http",
    summary="HTTP APIs: declarative REST, GraphQL, SOAP, webhooks, an HTTP sink; Stripe, "
            "Shopify, HubSpot, Google Sheets",
    extra="http",
    imports=("aiohttp", "zeep", "jwt", "lxml"),
    stages=(
        StageType(Kind.SOURCE, "rest", f"{_M}.rest:RestSource", RestOptions,
                  "A declarative REST API (dlt rest_api style)", _PASSES),
        StageType(Kind.SOURCE, "graphql", f"{_M}.graphql:GraphqlSource", GraphqlOptions,
                  "GraphQL connections (Relay pagination, cost throttling)", _PASSES),
        StageType(Kind.SOURCE, "soap", f"{_M}.soap:SoapSource", SoapOptions,
                  "A SOAP operation described by a WSDL (zeep)", _PASSES),
        StageType(Kind.SOURCE, "webhook", f"{_M}.webhook:WebhookSource", WebhookOptions,
                  "Signed webhook deliveries, journaled before 2xx",
                  frozenset({Capability.CDC})),
        StageType(Kind.SOURCE, "stripe", f"{_M}.presets.stripe:StripeSource", StripeOptions,
                  "Stripe objects and events", _PASSES),
        StageType(Kind.SOURCE, "shopify", f"{_M}.presets.shopify:ShopifySource", ShopifyOptions,
                  "Shopify through the GraphQL Admin API", _PASSES),
        StageType(Kind.SOURCE, "hubspot", f"{_M}.presets.hubspot:HubspotSource", HubspotOptions,
                  "HubSpot CRM v3 objects", _PASSES),
        StageType(Kind.SOURCE, "google_sheets", f"{_M}.presets.google_sheets:GoogleSheetsSource",
                  SheetsSourceOptions, "Ranges of a Google spreadsheet", _PASSES),
        StageType(Kind.SINK, "http", f"{_M}.sink:HttpSink", HttpSinkOptions,
                  "Batches POSTed as JSON/NDJSON with idempotency keys"),
        StageType(Kind.SINK, "google_sheets", f"{_M}.presets.google_sheets:GoogleSheetsSink",
                  SheetsSinkOptions, "Rows written to a Google sheet"),
    ),
)
