"""SoapSource (zeep builds and parses the envelopes) against the local SOAP 1.1 service."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from etlsync import Pipeline
from etlsync.connectors.http.soap import SoapSource
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.testing import CollectingSink
from tests.http.fakes.base import serve
from tests.http.fakes.soap import make_app, make_customers


async def test_pages_through_an_operation_with_typed_values() -> None:
    app = make_app(make_customers(230))
    async with serve(app) as url:
        src = SoapSource(f"{url}/customers?wsdl", "ListCustomers",
                         records_path="customers.Customer", page_size=50,
                         params={"country": "DE"}, stream="customers")
        sink = CollectingSink()
        await Pipeline(src, [], [sink], name="soap", checkpoint_store=MemoryCheckpointStore()).run()
    rows = sink.rows
    assert [r["id"] for r in rows] == list(range(1, 231, 2))
    assert isinstance(rows[0]["balance"], decimal.Decimal) and rows[0]["balance"] == decimal.Decimal("3.25")
    assert isinstance(rows[0]["updated"], dt.datetime)
    assert rows[1]["email"] is None  # id 3 has no email element
    assert app["calls"][:3] == [(1, 50, "DE"), (2, 50, "DE"), (3, 50, "DE")]


async def test_a_fault_is_a_clear_error_and_an_unknown_operation_too() -> None:
    app = make_app(make_customers(5))
    async with serve(app) as url:
        src = SoapSource(f"{url}/customers?wsdl", "ListCustomers",
                         records_path="customers.Customer", page_size=500)
        with pytest.raises(Exception, match="pageSize must be at most 100"):
            await Pipeline(src, [], [CollectingSink()], name="x").run()
        bad = SoapSource(f"{url}/customers?wsdl", "Nope", records_path="x")
        with pytest.raises(Exception, match="no operation 'Nope'"):
            await Pipeline(bad, [], [CollectingSink()], name="y").run()
