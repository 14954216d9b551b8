"""WebhookSource: an HTTP endpoint that verifies signatures, persists each event before it
answers 2xx, and feeds the pipeline from that journal.

- The endpoint binds ``127.0.0.1`` by default and accepts only signed requests (Stripe,
  Shopify, HubSpot v3 or a generic HMAC; see :mod:`.signatures`); anything else gets 401.
- Each event goes into a SQLite journal (``synchronous=FULL``) in one transaction *before*
  the 200 goes out: an event the sender saw accepted survives a crash.
- Events carry an id (Stripe's ``id``, Shopify's ``X-Shopify-Webhook-Id``, HubSpot's
  ``eventId``, or ``id_path`` / ``id_header``; else the body's SHA-256). A replayed
  delivery of a known id is answered 200 and not stored again, so it is applied once.
- The position is the journal's sequence number; committed events lose their bodies (their
  ids stay for ``dedup_seconds`` to recognise late replays).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from etlsync.connectors.http import signatures as sig
from etlsync.connectors.http.config import SecretRef
from etlsync.connectors.http.paginate import find
from etlsync.connectors.http.secrets import resolve_secret
from etlsync.core.batch import Batch
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.stages import Source
from etlsync.log import get_logger

_IDS = {"stripe": ("id", None), "shopify": (None, "X-Shopify-Webhook-Id"),
        "hubspot_v3": ("eventId", None), "hmac": (None, None)}


class WebhookSource(Source):
    """Signed webhook deliveries, durably journaled (see the module docstring).

    :param journal: the SQLite file events are persisted in before they are answered.
    :param verify: ``stripe``, ``shopify``, ``hubspot_v3`` or ``hmac``.
    :param secret: the signing secret (``{env: NAME}`` / ``{file: path}`` / literal).
    :param public_url: the URL senders use (HubSpot signs it), when behind a proxy.
    :param idle_timeout: end the run after so many seconds without an event.
    """

    name = "webhook"
    capabilities = frozenset({Capability.CDC})

    def __init__(self, journal: str, *, secret: str | dict[str, Any] | SecretRef,
                 verify: str = "hmac", host: str = "127.0.0.1", port: int = 8787,
                 path: str = "/webhook", stream: str = "events",
                 signature_header: str = "X-Signature", signature_encoding: str = "hex",
                 signature_prefix: str = "", id_path: str | None = None,
                 id_header: str | None = None, public_url: str | None = None,
                 tolerance: float = 300.0, batch_size: int = 500,
                 max_body: int = 1_048_576, dedup_seconds: float = 7 * 86400.0,
                 idle_timeout: float | None = None) -> None:
        if verify not in _IDS:
            raise ConfigError(f"verify: {verify!r} is not one of {', '.join(_IDS)}")
        if signature_encoding not in ("hex", "base64"):
            raise ConfigError("signature_encoding: hex or base64")
        self.journal, self.verify, self.host, self.port = journal, verify, host, port
        self.path, self.stream = path, stream
        self._secret_spec = secret
        self.signature_header, self.signature_encoding = signature_header, signature_encoding
        self.signature_prefix = signature_prefix
        default_path, default_header = _IDS[verify]
        self.id_path = id_path or default_path
        self.id_header = id_header or default_header
        self.public_url, self.tolerance = public_url, tolerance
        self.batch_size, self.max_body = batch_size, max_body
        self.dedup_seconds, self.idle_timeout = dedup_seconds, idle_timeout
        self.log = get_logger(source="webhook")
        self._arrived = asyncio.Event()
        self.bound_port: int | None = None
        self.accepted = self.duplicates = self.rejected = 0
        self._db: sqlite3.Connection | None = None

    # -- journal -----------------------------------------------------------------------------
    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.journal, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS webhook_events (seq INTEGER PRIMARY KEY "
                       "AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, stream TEXT NOT NULL, "
                       "body TEXT, received REAL NOT NULL)")
            self._db = db
        return self._db

    def _store(self, events: list[tuple[str, Any]]) -> int:
        """Persist new events in one transaction; the number that were new."""
        db = self._open_db()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            new = 0
            for event_id, event in events:
                cur = db.execute("INSERT OR IGNORE INTO webhook_events (event_id, stream, body, "
                                 "received) VALUES (?, ?, ?, ?)",
                                 (event_id, self.stream, json.dumps(event), now))
                new += cur.rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return new

    # -- endpoint ----------------------------------------------------------------------------
    def _check(self, secret: str, request: web.Request, body: bytes) -> None:
        h = request.headers
        if self.verify == "stripe":
            sig.verify_stripe(secret, h, body, self.tolerance)
        elif self.verify == "shopify":
            sig.verify_shopify(secret, h, body)
        elif self.verify == "hubspot_v3":
            uri = (self.public_url.rstrip("/") + request.path_qs) if self.public_url \
                else str(request.url)
            sig.verify_hubspot_v3(secret, h, body, request.method, uri, self.tolerance)
        else:
            sig.verify_hmac(secret, h, body, header=self.signature_header,
                            encoding=self.signature_encoding, prefix=self.signature_prefix)

    def _events(self, request: web.Request, body: bytes) -> list[tuple[str, Any]]:
        payload = json.loads(body)
        items = payload if isinstance(payload, list) else [payload]
        out = []
        for i, item in enumerate(items):
            event_id = None
            if self.id_path and isinstance(item, dict):
                found = find(item, self.id_path)
                event_id = None if found is None else str(found)
            if event_id is None and self.id_header and request.headers.get(self.id_header):
                event_id = request.headers[self.id_header] + (f"#{i}" if len(items) > 1 else "")
            if event_id is None:
                event_id = "sha256:" + hashlib.sha256(body).hexdigest() + f"#{i}"
            out.append((event_id, item))
        return out

    def _app(self, secret: str) -> web.Application:
        async def receive(request: web.Request) -> web.Response:
            body = await request.read()
            try:
                self._check(secret, request, body)
            except sig.SignatureError as exc:
                self.rejected += 1
                self.log.warning("webhook rejected", reason=str(exc))
                return web.json_response({"error": "invalid signature"}, status=401)
            try:
                events = self._events(request, body)
            except ValueError:
                return web.json_response({"error": "body is not JSON"}, status=400)
            new = self._store(events)  # durable before the answer
            self.accepted += new
            self.duplicates += len(events) - new
            if new:
                self._arrived.set()
            return web.json_response({"received": len(events), "new": new})

        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(self.path, receive)
        return app

    # -- source ------------------------------------------------------------------------------
    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        secret = resolve_secret(self._secret_spec, "secret")
        if not secret:
            raise ConfigError("secret: the webhook needs its signing secret")
        last = int(position or 0)
        db = self._open_db()
        runner = web.AppRunner(self._app(secret), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.bound_port = sockets[0].getsockname()[1]
        self.log.info("webhook listening", host=self.host, port=self.bound_port, path=self.path)
        try:
            while True:
                self._arrived.clear()
                rows = db.execute("SELECT seq, event_id, body FROM webhook_events WHERE seq > ? "
                                  "AND body IS NOT NULL ORDER BY seq LIMIT ?",
                                  (last, self.batch_size)).fetchall()
                if rows:
                    last = rows[-1][0]
                    events = [{**json.loads(b), "_event_id": e} if b.startswith("{")
                              else {"value": json.loads(b), "_event_id": e} for _, e, b in rows]
                    yield Batch(events, stream=self.stream, position=last)
                    continue
                try:
                    await asyncio.wait_for(self._arrived.wait(), self.idle_timeout)
                except TimeoutError:
                    return
        finally:
            await runner.cleanup()

    async def on_commit(self, position: Any) -> None:
        db = self._open_db()
        db.execute("UPDATE webhook_events SET body = NULL WHERE seq <= ? AND body IS NOT NULL",
                   (int(position),))
        db.execute("DELETE FROM webhook_events WHERE body IS NULL AND received < ?",
                   (time.time() - self.dedup_seconds,))

    def extra_metrics(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": self.rejected}
