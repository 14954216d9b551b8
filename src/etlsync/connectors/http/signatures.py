"""Webhook signature checks, each as its provider documents it.

- ``stripe``: ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
  (several ``v1`` allowed during secret rotation), rejected outside ``tolerance`` seconds.
- ``shopify``: ``X-Shopify-Hmac-Sha256``: base64 HMAC-SHA256 of the raw body.
- ``hubspot_v3``: ``X-HubSpot-Signature-v3``: base64 HMAC-SHA256 of ``method + URI + body +
  timestamp`` with ``X-HubSpot-Request-Timestamp`` (milliseconds), rejected after 5 minutes.
- ``hmac``: a header holding the HMAC of the body (hex or base64, an optional prefix such as
  ``sha256=``), for any other sender.

Comparisons are constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping


class SignatureError(Exception):
    """The request is not signed by the expected sender (answered 401)."""


def _mac(secret: str, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()


def verify_stripe(secret: str, headers: Mapping[str, str], body: bytes,
                  tolerance: float = 300.0, now: float | None = None) -> None:
    header = headers.get("Stripe-Signature")
    if not header:
        raise SignatureError("no Stripe-Signature header")
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    sigs = [v for k, v in parts if k.strip() == "v1"]
    if not stamps or not sigs:
        raise SignatureError("Stripe-Signature lacks t= or v1=")
    try:
        stamp = int(stamps[0])
    except ValueError:
        raise SignatureError("Stripe-Signature t= is not a timestamp") from None
    current = time.time() if now is None else now
    if tolerance and abs(current - stamp) > tolerance:
        raise SignatureError("Stripe-Signature timestamp outside the tolerance")
    expected = _mac(secret, f"{stamp}.".encode() + body).hex()
    if not any(hmac.compare_digest(expected, s.strip()) for s in sigs):
        raise SignatureError("Stripe-Signature does not match")


def verify_shopify(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    given = headers.get("X-Shopify-Hmac-Sha256")
    if not given:
        raise SignatureError("no X-Shopify-Hmac-Sha256 header")
    expected = base64.b64encode(_mac(secret, body)).decode()
    if not hmac.compare_digest(expected, given.strip()):
        raise SignatureError("X-Shopify-Hmac-Sha256 does not match")


def verify_hubspot_v3(secret: str, headers: Mapping[str, str], body: bytes, method: str,
                      uri: str, tolerance: float = 300.0, now: float | None = None) -> None:
    given, stamp = headers.get("X-HubSpot-Signature-v3"), headers.get("X-HubSpot-Request-Timestamp")
    if not given or not stamp:
        raise SignatureError("no X-HubSpot-Signature-v3 / X-HubSpot-Request-Timestamp header")
    try:
        millis = int(stamp)
    except ValueError:
        raise SignatureError("X-HubSpot-Request-Timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - millis / 1000) > tolerance:
        raise SignatureError("X-HubSpot-Request-Timestamp is too old")
    message = method.encode() + uri.encode() + body + stamp.encode()
    expected = base64.b64encode(_mac(secret, message)).decode()
    if not hmac.compare_digest(expected, given.strip()):
        raise SignatureError("X-HubSpot-Signature-v3 does not match")


def verify_hmac(secret: str, headers: Mapping[str, str], body: bytes, *, header: str,
                algorithm: str = "sha256", encoding: str = "hex", prefix: str = "") -> None:
    given = headers.get(header)
    if not given:
        raise SignatureError(f"no {header} header")
    digest = _mac(secret, body, algorithm)
    expected = prefix + (digest.hex() if encoding == "hex" else base64.b64encode(digest).decode())
    if not hmac.compare_digest(expected, given.strip()):
        raise SignatureError(f"{header} does not match")


def sign_stripe(secret: str, body: bytes, stamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``body`` (for tests and local senders)."""
    t = int(time.time()) if stamp is None else stamp
    return f"t={t},v1={_mac(secret, f'{t}.'.encode() + body).hex()}"
