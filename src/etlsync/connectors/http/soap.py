"""SoapSource: one operation of a WSDL-described SOAP service, paged by its parameters.

zeep (the maintained SOAP client for Python) reads the WSDL, builds each request envelope
from the operation's schema and parses each reply (faults included) into Python objects;
etlsync sends the envelopes with aiohttp, through the shared client (auth, budget, retries,
breaker). The WSDL itself is fetched once with aiohttp and handed to zeep, so nothing
blocks the event loop. Paging: ``page_param`` (a page number from ``first_page``, or an
offset when ``page_unit: offset``) and ``page_size_param``; a page shorter than
``page_size`` ends the pass. The position is the next page's number.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from etlsync.connectors.http import config as cfg
from etlsync.connectors.http.client import HttpClient
from etlsync.connectors.http.paginate import find
from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.stages import Source
from etlsync.resilience import PermanentError


class SoapFault(PermanentError):
    """The service answered with a SOAP Fault."""


class _Reply:
    """What zeep's ``process_reply`` reads of a response (a ``requests``-like view)."""

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code, self.headers, self.content = status, headers, content
        self.encoding = "utf-8"


def _plain(value: Any) -> Any:
    """zeep's objects as plain values (dicts, lists, scalars)."""
    from zeep.helpers import serialize_object

    value = serialize_object(value, dict)  # type: ignore[no-untyped-call]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | decimal.Decimal | int | float | str | bool):
        return value
    return value if value is None else str(value)


class SoapSource(Source):
    """Records of a SOAP operation (see the module docstring).

    :param wsdl: the WSDL's URL (fetched with the client's auth and TLS) or a file path.
    :param operation: the operation to call.
    :param records_path: where the records sit in the reply (``customers.Customer``).
    :param client: headers, auth, budget, retries, TLS (``base_url``: default the WSDL's
        service address).
    """

    name = "soap"
    capabilities = frozenset({Capability.PASSES})

    def __init__(self, wsdl: str, operation: str, *, records_path: str,
                 params: Mapping[str, Any] | None = None, page_param: str | None = "page",
                 page_size_param: str | None = "pageSize", page_size: int = 100,
                 first_page: int = 1, page_unit: str = "page", stream: str | None = None,
                 client: Mapping[str, Any] | None = None, service: str | None = None,
                 port: str | None = None) -> None:
        if page_unit not in ("page", "offset"):
            raise ConfigError("page_unit: page or offset")
        self.wsdl, self.operation, self.records_path = wsdl, operation, records_path
        self.params = dict(params or {})
        self.page_param, self.page_size_param = page_param, page_size_param
        self.page_size, self.first_page, self.page_unit = page_size, first_page, page_unit
        self.stream = stream or operation
        spec = dict(client or {})
        spec.setdefault("base_url", wsdl if wsdl.startswith(("http://", "https://")) else "http://localhost")
        self.client_config: cfg.Client = cfg.convert(spec, cfg.Client, "client")
        self.service, self.port = service, port
        self._client: HttpClient | None = None

    def extra_metrics(self) -> dict[str, Any]:
        return self._client.extra_metrics() if self._client is not None else {}

    async def _zeep(self, http: HttpClient) -> Any:
        import zeep
        from zeep.transports import Transport

        if self.wsdl.startswith(("http://", "https://")):
            fetched = await http.request("GET", self.wsdl, decode=False)
            documents = {self.wsdl: fetched.text.encode()}
        else:
            documents = {self.wsdl: await asyncio.to_thread(Path(self.wsdl).read_bytes)}

        class Prefetched(Transport):
            """Serves the WSDL fetched above; no blocking network access from zeep."""

            def load(self, url: str) -> bytes:
                if url in documents:
                    return documents[url]
                raise ConfigError(f"wsdl: imports another document ({url}); give one "
                                  "self-contained WSDL")

        try:
            return zeep.Client(self.wsdl, transport=Prefetched(),  # type: ignore[no-untyped-call]
                               service_name=self.service, port_name=self.port)
        except (ValueError, LookupError, zeep.exceptions.Error) as exc:
            raise ConfigError(f"wsdl: cannot use {self.wsdl!r}: {exc}") from None

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        from lxml import etree
        from zeep.exceptions import Fault

        page = int(position["page"]) if isinstance(position, dict) else self.first_page
        http = self._client = HttpClient(self.client_config)
        try:
            zc = await self._zeep(http)
            service = zc.service
            binding = service._binding
            try:
                op = binding.get(self.operation)
            except ValueError:
                raise ConfigError(f"operation: the WSDL has no operation {self.operation!r}") \
                    from None
            address = service._binding_options["address"]
            while True:
                args = dict(self.params)
                if self.page_param:
                    args[self.page_param] = page
                if self.page_size_param:
                    args[self.page_size_param] = self.page_size
                envelope = zc.create_message(service, self.operation, **args)
                body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
                resp = await http.request(
                    "POST", address, data=body, decode=False,
                    headers={"Content-Type": "text/xml; charset=utf-8",
                             "SOAPAction": f'"{op.soapaction or ""}"'},
                    actions=[cfg.ResponseAction(status_code=500, content="Fault",
                                                action="success")])
                try:
                    result = binding.process_reply(
                        zc, op, _Reply(resp.status, resp.headers, resp.text.encode()))
                except Fault as exc:
                    raise SoapFault(f"{self.operation}: SOAP fault {exc.code}: {exc.message}") \
                        from None
                records = find(_plain(result), self.records_path) or []
                rows: list[Row] = [r if isinstance(r, dict) else {"value": r} for r in
                                   (records if isinstance(records, list) else [records])]
                step = len(rows) if self.page_unit == "offset" else 1
                page += step if step else 1
                done = len(rows) < self.page_size
                yield Batch(rows, stream=self.stream, position=None if done else {"page": page})
                if done:
                    break
        finally:
            await http.close()
        yield Batch([], stream=self.stream, position={"page": self.first_page, "done": True},
                    end_of_pass=True)
