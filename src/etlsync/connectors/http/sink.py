"""HttpSink: batches POSTed as JSON or NDJSON, each with an idempotency key derived from the
batch's position, retried on 429 and 5xx.

The key is ``sha256(pipeline, stream, position, part)`` in hex: a batch replayed after a
crash (the same source position) carries the same key, so a receiver that remembers keys
(Stripe's ``Idempotency-Key`` contract) applies it once. A batch larger than
``max_records`` is sent in parts, each with its own key. A batch without a position (inside
an upstream transaction) is keyed by the last position before it and its sequence after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from etlsync.connectors.http import config as cfg
from etlsync.connectors.http.client import HttpClient
from etlsync.core.batch import Batch
from etlsync.core.codec import dumps
from etlsync.core.errors import ConfigError
from etlsync.core.stages import Sink, StageContext


def idempotency_key(pipeline: str, stream: str, position: Any, part: int) -> str:
    """The key a batch (part) is sent with: the same for the same position."""
    raw = b"\0".join([pipeline.encode(), stream.encode(), dumps(position), str(part).encode()])
    return hashlib.sha256(raw).hexdigest()


class HttpSink(Sink):
    """POSTs (or PUTs) every batch to ``path``.

    :param client: base URL, headers, auth, budget, retries, TLS (as for the REST source).
    :param path: where batches go (``{stream}`` is replaced by the batch's stream).
    :param format: ``json`` (an array, or ``{wrap: [...]}``) or ``ndjson``.
    :param idempotency_header: the header carrying the key (``None``: no key).
    """

    name = "http"

    def __init__(self, client: Mapping[str, Any], path: str = "", *,
                 method: str = "POST", format: str = "json", wrap: str | None = None,
                 max_records: int = 500, idempotency_header: str | None = "Idempotency-Key"
                 ) -> None:
        self.client_config: cfg.Client = cfg.convert(dict(client), cfg.Client, "client")
        if format not in ("json", "ndjson"):
            raise ConfigError(f"format: {format!r} is not json or ndjson")
        if method not in ("POST", "PUT", "PATCH"):
            raise ConfigError(f"method: {method!r} is not POST, PUT or PATCH")
        if max_records < 1:
            raise ConfigError("max_records must be >= 1")
        self.path, self.method, self.format, self.wrap = path, method, format, wrap
        self.max_records = max_records
        self.idempotency_header = idempotency_header
        self.client: HttpClient | None = None
        self.pipeline = "pipeline"
        self._last_position: Any = None
        self._since = 0
        self.sent = 0

    async def open(self, context: StageContext) -> None:
        self.pipeline = context.pipeline
        self._last_position = context.resume.position if context.resume is not None else None
        self.client = HttpClient(self.client_config, where="sink.client")

    def _body(self, rows: list[dict[str, Any]]) -> tuple[bytes, str]:
        if self.format == "ndjson":
            encoder = msgspec.json.Encoder()
            return b"".join(encoder.encode(r) + b"\n" for r in rows), "application/x-ndjson"
        payload: Any = {self.wrap: rows} if self.wrap else rows
        return msgspec.json.encode(payload), "application/json"

    async def write(self, batch: Batch) -> None:
        assert self.client is not None, "open() first"
        if batch.position is not None:
            anchor, self._since = batch.position, 0
            self._last_position = batch.position
        else:
            self._since += 1
            anchor = {"after": self._last_position, "n": self._since}
        rows = batch.rows
        if not rows:
            return
        path = self.path.replace("{stream}", batch.stream)
        for part, start in enumerate(range(0, len(rows), self.max_records)):
            body, content_type = self._body(rows[start:start + self.max_records])
            headers = {"Content-Type": content_type}
            if self.idempotency_header:
                headers[self.idempotency_header] = idempotency_key(
                    self.pipeline, batch.stream, anchor, part)
            await self.client.request(self.method, path, data=body, headers=headers,
                                      decode=False)
            self.sent += 1

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    def extra_metrics(self) -> dict[str, Any]:
        return self.client.extra_metrics() if self.client is not None else {}
