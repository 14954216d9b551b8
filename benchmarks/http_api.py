"""HTTP APIs: the REST source against a hand-written aiohttp loop, and a parent/child fan-out
under a request budget.

    python benchmarks/http_api.py --rows 200000 --json

One local fake API (its own process, pages pre-encoded so the server is not the bottleneck):

- ``rest_etlsync``: pages of 100 JSON records (offset pagination) through ``RestSource`` into
  a null sink, against ``rest_aiohttp``: a hand-written ``aiohttp`` loop over the same pages
  (``await resp.json()``, records appended to a list). ``ratio_vs_aiohttp`` = aiohttp's
  seconds / etlsync's (target >= 0.9); ``ratio_cpu_vs_aiohttp`` the same for the client
  process's CPU time (less sensitive to a loaded machine; the server is another process).
- ``budget_etlsync``: parents (pages of 100) and one child request per parent record,
  ``--budget`` requests/s allowed; the server counts requests over that budget in any
  window of one second. ``budget_used`` = requests per second achieved / budget (target
  >= 0.9), ``over_budget`` = the server's count (target 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_result, report, run_variants

VARIANTS = ("rest_etlsync", "rest_aiohttp", "budget_etlsync")
PAGE = 100


# -- the fake API -----------------------------------------------------------------------------

def serve(port_file: str, rows: int, limit: int | None) -> None:
    from aiohttp import web

    records = [{"id": i, "customer": f"customer {i % 5000}", "amount": i * 7 % 10007,
                "status": ("paid", "open", "shipped")[i % 3],
                "updated_at": f"2024-01-01T00:00:{i % 60:02d}Z"} for i in range(rows)]
    pages = {o: json.dumps({"data": records[o:o + PAGE], "total": rows}).encode()
             for o in range(0, rows, PAGE)}
    empty = json.dumps({"data": [], "total": rows}).encode()
    child = json.dumps({"data": [{"line": 1, "sku": "a"}, {"line": 2, "sku": "b"}]}).encode()
    arrivals: deque[float] = deque()
    stats = {"requests": 0, "over_budget": 0, "first": 0.0, "last": 0.0}

    def count() -> bool:
        now = time.monotonic()
        stats["requests"] += 1
        stats["first"] = stats["first"] or now
        stats["last"] = now
        if limit is None:
            return True
        while arrivals and arrivals[0] <= now - 1.0:
            arrivals.popleft()
        if len(arrivals) >= limit:
            stats["over_budget"] += 1
            return False
        arrivals.append(now)
        return True

    async def orders(request: web.Request) -> web.Response:
        if not count():
            return web.Response(status=429, headers={"Retry-After": "1"})
        offset = int(request.query.get("offset", 0))
        return web.Response(body=pages.get(offset, empty),
                            content_type="application/json")

    async def lines(request: web.Request) -> web.Response:
        if not count():
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(body=child, content_type="application/json")

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/orders", orders)
        app.router.add_get("/orders/{id}/lines", lines)
        app.router.add_get("/_stats", get_stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        write_port(port_file, f"http://127.0.0.1:{port}")
        await asyncio.Event().wait()

    asyncio.run(main())


def write_port(port_file: str, url: str) -> None:
    Path(port_file + ".tmp").write_text(url)
    os.replace(port_file + ".tmp", port_file)


def start_server(rows: int, limit: int | None) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tempfile.mktemp(prefix="etlsync-http-bench-")
    args = [sys.executable, __file__, "--serve", port_file, "--rows", str(rows)]
    if limit is not None:
        args += ["--limit", str(limit)]
    proc = subprocess.Popen(args)
    for _ in range(600):
        if os.path.exists(port_file):
            url = Path(port_file).read_text()
            os.unlink(port_file)
            return proc, url
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the fake API did not start")


async def server_stats(url: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(f"{url}/_stats") as r:
        result: dict[str, Any] = await r.json()
        return result


# -- variants ---------------------------------------------------------------------------------

async def run_rest_etlsync(url: str) -> int:
    from etlsync import Pipeline
    from etlsync.connectors.http import RestSource
    from etlsync.core.batch import Batch
    from etlsync.core.stages import Sink

    class NullSink(Sink):
        rows = 0

        async def write(self, batch: Batch) -> None:
            self.rows += len(batch)

    sink = NullSink()
    src = RestSource({"base_url": url, "paginator": {"type": "offset", "limit": PAGE,
                                                     "total_path": "total"}},
                     [{"name": "orders", "endpoint": {"data_selector": "data"}}])
    await Pipeline(src, [], [sink], name="bench").run()
    return sink.rows


async def run_rest_aiohttp(url: str) -> int:
    import aiohttp

    out: list[dict[str, Any]] = []
    offset = 0
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{url}/orders", params={"offset": offset,
                                                            "limit": PAGE}) as resp:
                resp.raise_for_status()
                body = await resp.json()
            page = body["data"]
            out.extend(page)
            offset += PAGE
            if not page or offset >= body["total"]:
                break
    return len(out)


async def run_budget(url: str, budget: int) -> tuple[int, float]:
    from etlsync import Pipeline
    from etlsync.connectors.http import RestSource
    from etlsync.testing import CollectingSink

    src = RestSource({"base_url": url, "max_concurrency": 8,
                      "paginator": {"type": "offset", "limit": PAGE, "total_path": "total"},
                      "budget": {"call_limit": budget, "period": 1.0}},
                     [{"name": "orders", "selected": False,
                       "endpoint": {"data_selector": "data"}},
                      {"name": "lines", "endpoint": {"path": "orders/{resources.orders.id}/lines",
                                                     "paginator": "single_page"}}])
    sink = CollectingSink()
    await Pipeline(src, [], [sink], name="bench").run()
    return len(sink.rows), float(src.extra_metrics()["requests"])


def cpu_seconds() -> float:
    """CPU time of this process (the client; the server is another process)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def child(variant: str, rows: int, budget: int) -> None:
    limit = budget if variant == "budget_etlsync" else None
    proc, url = start_server(rows, limit)
    import aiohttp  # noqa: F401  - imports are a one-time cost, not measured

    if variant != "rest_aiohttp":
        import etlsync.connectors.http.rest
        import etlsync.testing  # noqa: F401
    try:
        t0 = time.perf_counter()
        c0 = cpu_seconds()
        extra: dict[str, Any] = {}
        if variant == "rest_etlsync":
            got = asyncio.run(run_rest_etlsync(url))
        elif variant == "rest_aiohttp":
            got = asyncio.run(run_rest_aiohttp(url))
        else:
            got, _ = asyncio.run(run_budget(url, budget))
        seconds = time.perf_counter() - t0
        extra["cpu_s"] = round(cpu_seconds() - c0, 4)
        stats = asyncio.run(server_stats(url))
        if variant == "budget_etlsync":
            span = max(1e-9, stats["last"] - stats["first"])
            # n requests in a span of s seconds: at most budget * s + budget are allowed
            allowed = budget * span + budget
            extra = {"budget": budget, "requests": stats["requests"],
                     "budget_used": round(stats["requests"] / allowed, 4),
                     "requests_per_s": round(stats["requests"] / span, 1),
                     "over_budget": stats["over_budget"]}
        if variant.startswith("rest") and got != rows:
            raise SystemExit(f"{variant}: read {got} of {rows} records")
        child_result(variant, got, seconds, load_avg_1m=round(os.getloadavg()[0], 2), **extra)
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget", type=int, default=200, help="requests/s of the fan-out")
    ap.add_argument("--budget-rows", type=int, default=3000,
                    help="parent records of the fan-out (one child request each)")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.rows, args.limit)
        return
    if args.variant:
        rows = args.budget_rows if args.variant == "budget_etlsync" else args.rows
        child(args.variant, rows, args.budget)
        return
    results = run_variants(__file__, VARIANTS[:2], args.rows, args.repeat,
                           ["--budget", str(args.budget)])
    results.update(run_variants(__file__, VARIANTS[2:], args.budget_rows, 1,
                                ["--budget", str(args.budget), "--budget-rows",
                                 str(args.budget_rows)]))
    ours, base = results.get("rest_etlsync"), results.get("rest_aiohttp")
    if ours and base and "error" not in ours and "error" not in base:
        ours["ratio_vs_aiohttp"] = round(base["seconds"] / ours["seconds"], 3)
        ours["ratio_cpu_vs_aiohttp"] = round(base["cpu_s"] / ours["cpu_s"], 3)
    report(results, args.json)


if __name__ == "__main__":
    main()
