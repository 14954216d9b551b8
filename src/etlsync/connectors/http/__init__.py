"""HTTP APIs: the declarative REST source, GraphQL and SOAP sources, a webhook source, an HTTP
sink, and presets for Stripe, Shopify, HubSpot and Google Sheets (docs/connectors/http.md).
Needs ``etlsync[http]`` (aiohttp; zeep for SOAP, PyJWT for signed-JWT grants), imported on
first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etlsync.core.lazy import lazy_attributes

if TYPE_CHECKING:
    from etlsync.connectors.http.client import HttpClient
    from etlsync.connectors.http.graphql import GraphqlSource
    from etlsync.connectors.http.presets.google_sheets import GoogleSheetsSink, GoogleSheetsSource
    from etlsync.connectors.http.presets.hubspot import HubspotSource
    from etlsync.connectors.http.presets.shopify import ShopifySource
    from etlsync.connectors.http.presets.stripe import StripeSource
    from etlsync.connectors.http.rest import RestSource
    from etlsync.connectors.http.sink import HttpSink
    from etlsync.connectors.http.soap import SoapSource
    from etlsync.connectors.http.webhook import WebhookSource

__getattr__, __dir__ = lazy_attributes(__name__, {
    "GoogleSheetsSink": "etlsync.connectors.http.presets.google_sheets",
    "GoogleSheetsSource": "etlsync.connectors.http.presets.google_sheets",
    "GraphqlSource": "etlsync.connectors.http.graphql",
    "HttpClient": "etlsync.connectors.http.client",
    "HttpSink": "etlsync.connectors.http.sink",
    "HubspotSource": "etlsync.connectors.http.presets.hubspot",
    "RestSource": "etlsync.connectors.http.rest",
    "ShopifySource": "etlsync.connectors.http.presets.shopify",
    "SoapSource": "etlsync.connectors.http.soap",
    "StripeSource": "etlsync.connectors.http.presets.stripe",
    "WebhookSource": "etlsync.connectors.http.webhook",
})

__all__ = ["GoogleSheetsSink", "GoogleSheetsSource", "GraphqlSource", "HttpClient", "HttpSink",
           "HubspotSource", "RestSource", "ShopifySource", "SoapSource", "StripeSource",
           "WebhookSource"]
