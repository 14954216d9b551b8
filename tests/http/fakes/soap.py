"""A local SOAP 1.1 service described by a document/literal WSDL, parsed and answered with
lxml (no string templates).

What it implements:
- WSDL 1.1 (W3C Note, 15 March 2001) served at ``GET /customers?wsdl``: one portType with
  ``ListCustomers``, a SOAP 1.1 document/literal binding (section 3) and the service address.
- SOAP 1.1 (W3C Note, 8 May 2000): the Envelope/Body of section 4; requests POSTed with
  ``Content-Type: text/xml`` and a ``SOAPAction`` header (section 6.1.1); errors as a
  ``soap:Fault`` with ``faultcode`` / ``faultstring`` (section 4.4) in an HTTP 500 response
  (section 6.2); ``soap:Client`` for bad arguments (a page size over 100 here).
- Paging by the operation's ``page`` / ``pageSize`` parameters, with the ``total`` count.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from lxml import etree

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:example:customers"

WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:example:customers"
  targetNamespace="urn:example:customers" name="Customers">
  <types>
    <xsd:schema targetNamespace="urn:example:customers" elementFormDefault="qualified">
      <xsd:complexType name="Customer">
        <xsd:sequence>
          <xsd:element name="id" type="xsd:int"/>
          <xsd:element name="name" type="xsd:string"/>
          <xsd:element name="email" type="xsd:string" minOccurs="0"/>
          <xsd:element name="balance" type="xsd:decimal"/>
          <xsd:element name="updated" type="xsd:dateTime"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="ArrayOfCustomer">
        <xsd:sequence>
          <xsd:element name="Customer" type="tns:Customer" minOccurs="0" maxOccurs="unbounded"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:element name="ListCustomers">
        <xsd:complexType><xsd:sequence>
          <xsd:element name="page" type="xsd:int"/>
          <xsd:element name="pageSize" type="xsd:int"/>
          <xsd:element name="country" type="xsd:string" minOccurs="0"/>
        </xsd:sequence></xsd:complexType>
      </xsd:element>
      <xsd:element name="ListCustomersResponse">
        <xsd:complexType><xsd:sequence>
          <xsd:element name="total" type="xsd:int"/>
          <xsd:element name="customers" type="tns:ArrayOfCustomer"/>
        </xsd:sequence></xsd:complexType>
      </xsd:element>
    </xsd:schema>
  </types>
  <message name="ListCustomersIn"><part name="parameters" element="tns:ListCustomers"/></message>
  <message name="ListCustomersOut"><part name="parameters" element="tns:ListCustomersResponse"/></message>
  <portType name="CustomersPort">
    <operation name="ListCustomers">
      <input message="tns:ListCustomersIn"/><output message="tns:ListCustomersOut"/>
    </operation>
  </portType>
  <binding name="CustomersBinding" type="tns:CustomersPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="ListCustomers">
      <soap:operation soapAction="urn:example:customers/ListCustomers"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output>
    </operation>
  </binding>
  <service name="CustomersService">
    <port name="CustomersPort" binding="tns:CustomersBinding"><soap:address location="{address}"/></port>
  </service>
</definitions>
"""


def make_customers(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"Customer {i}", "email": f"c{i}@example.com" if i % 3 else None,
             "balance": f"{i * 3}.25", "updated": f"2024-02-{1 + i % 28:02d}T10:00:00",
             "country": "DE" if i % 2 else "FR"} for i in range(1, n + 1)]


def _fault(code: str, text: str) -> web.Response:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP})
    fault = etree.SubElement(etree.SubElement(env, f"{{{SOAP}}}Body"), f"{{{SOAP}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = text
    return web.Response(body=etree.tostring(env, xml_declaration=True, encoding="utf-8"),
                        status=500, content_type="text/xml", charset="utf-8")


def make_app(customers: list[dict[str, Any]]) -> web.Application:
    app = web.Application()
    app["calls"] = []

    async def wsdl(request: web.Request) -> web.Response:
        address = str(request.url.with_query(None))
        return web.Response(text=WSDL.replace("{address}", address), content_type="text/xml")

    async def call(request: web.Request) -> web.Response:
        if request.headers.get("SOAPAction", "").strip('"') != "urn:example:customers/ListCustomers":
            return _fault("Client", "Unknown SOAPAction")
        try:
            doc = etree.fromstring(await request.read())
        except etree.XMLSyntaxError:
            return _fault("Client", "Malformed XML")
        op = doc.find(f"{{{SOAP}}}Body/{{{TNS}}}ListCustomers")
        if op is None:
            return _fault("Client", "Expected ListCustomers")
        page = int(op.findtext(f"{{{TNS}}}page") or 1)
        size = int(op.findtext(f"{{{TNS}}}pageSize") or 10)
        country = op.findtext(f"{{{TNS}}}country")
        app["calls"].append((page, size, country))
        if size > 100:
            return _fault("Client", "pageSize must be at most 100")
        rows = [c for c in customers if country is None or c["country"] == country]
        chunk = rows[(page - 1) * size:page * size]
        env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP, "tns": TNS})
        out = etree.SubElement(etree.SubElement(env, f"{{{SOAP}}}Body"),
                               f"{{{TNS}}}ListCustomersResponse")
        etree.SubElement(out, f"{{{TNS}}}total").text = str(len(rows))
        arr = etree.SubElement(out, f"{{{TNS}}}customers")
        for c in chunk:
            node = etree.SubElement(arr, f"{{{TNS}}}Customer")
            for key in ("id", "name", "email", "balance", "updated"):
                if c[key] is not None:
                    etree.SubElement(node, f"{{{TNS}}}{key}").text = str(c[key])
        return web.Response(body=etree.tostring(env, xml_declaration=True, encoding="utf-8"),
                            content_type="text/xml", charset="utf-8")

    app.router.add_get("/customers", wsdl)
    app.router.add_post("/customers", call)
    return app
