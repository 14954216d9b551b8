"""Unit and property tests of the HTTP family's pure parts: the watermark for pages in any
order (with lookback), Link headers, selectors, signatures, the manifest's imports."""

from __future__ import annotations

import random
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from etlsync.connectors.http import signatures as sig
from etlsync.connectors.http.incremental import ApiWatermark, as_param, shift
from etlsync.connectors.http.paginate import find, parse_link_header, select_records


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), max_size=25), min_size=1, max_size=5),
       st.integers(0, 10_000), st.sampled_from([0, 3]))
def test_every_record_is_delivered_once_over_passes_in_any_order(
        passes: list[list[int]], seed: int, lag: int) -> None:
    """Records appear over several passes (each new record's cursor at or above the last
    pass's top, as an API with a growing cursor gives them; with a lookback window, up to
    ``lag`` below it); each pass re-lists everything from the start value in a random order.
    Every record is delivered exactly once."""
    rng = random.Random(seed)
    stored: list[dict[str, int]] = []
    state = None
    delivered: list[int] = []
    top = 0
    next_id = 0
    for new in passes:
        for c in new:
            value = top + c - (min(lag, c) if lag else 0)
            stored.append({"id": next_id, "cursor": max(0, value)})
            next_id += 1
        wm = ApiWatermark("cursor", ["id"], state, lag=lag)
        start = wm.start_value()
        page = [r for r in stored if start is None or r["cursor"] >= start]
        rng.shuffle(page)
        for chunk in (page[i:i + 4] for i in range(0, len(page), 4)):
            delivered.extend(r["id"] for r in wm.admit(chunk))
        state = wm.completed_state()
        top = max([r["cursor"] for r in stored], default=0)
    assert sorted(delivered) == list(range(next_id))


def test_shift_and_param_forms() -> None:
    assert shift("2024-01-01T00:10:00Z", -600) == "2024-01-01T00:00:00Z"
    assert shift(1_700_000_600, -600) == 1_700_000_000
    assert as_param("2024-01-01T00:00:00Z", "epoch_seconds") == 1704067200
    assert as_param(1704067200, "iso") == "2024-01-01T00:00:00Z"


def test_link_headers_and_selectors() -> None:
    links = parse_link_header('<https://a/x?page=2>; rel="next", <https://a/x?page=9>; rel=last')
    assert links == {"next": "https://a/x?page=2", "last": "https://a/x?page=9"}
    body = {"data": {"items": [{"id": 1}]}, "paging": {"next": {"after": "5"}}}
    assert select_records(body, "$.data.items[*]", "r") == [{"id": 1}]
    assert find(body, "paging.next.after") == "5"
    assert select_records({"results": [1, 2]}, None, "r") == [1, 2]


def test_signature_checks_refuse_tampering() -> None:
    body = b'{"id": "evt_1"}'
    header = sig.sign_stripe("whsec", body)
    sig.verify_stripe("whsec", {"Stripe-Signature": header}, body)
    for bad in (body + b" ", b"{}"):
        try:
            sig.verify_stripe("whsec", {"Stripe-Signature": header}, bad)
        except sig.SignatureError:
            continue
        raise AssertionError("tampered body accepted")


def test_the_manifest_imports_no_driver() -> None:
    code = ("import sys; import etlsync.connectors.http.manifest, etlsync.connectors.http; "
            "print([m for m in ('aiohttp', 'zeep', 'jwt', 'lxml') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_tls_options_make_the_context() -> None:
    import ssl

    from etlsync.connectors.http.client import ssl_context
    from etlsync.connectors.http.config import Tls

    assert ssl_context(Tls(verify=False)) is False
    assert ssl_context(Tls()) is True
    ctx = ssl_context(Tls(ca_file=ssl.get_default_verify_paths().cafile)) \
        if ssl.get_default_verify_paths().cafile else None
    assert ctx is None or isinstance(ctx, ssl.SSLContext)
