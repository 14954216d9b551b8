"""Binlog decode rate: etlsync's asyncio reader vs python-mysql-replication, same events.

Inserts ``--rows`` rows into a 7-column table twice (in one transaction, and in
transactions of 100 rows), then each variant reads exactly those binlog ranges in its own
subprocess and decodes every row:

- ``etlsync_reader``: :class:`etlsync.connectors.mysql.binlog.BinlogStream` (rows as dicts);
- ``etlsync_source``: :class:`MysqlCdcSource` batches (what a pipeline gets);
- ``mysql_replication``: ``BinLogStreamReader`` (``blocking=False``), touching ``.rows``.

    python benchmarks/mysql_cdc.py --rows 200000 --json
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import child_result, parse_args, report, run_variants

HOST = os.environ.get("ETLSYNC_TEST_MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("ETLSYNC_TEST_MYSQL_PORT", "3306"))
DB = "etlsync_test"
VARIANTS = ["etlsync_reader", "etlsync_source", "mysql_replication"]


def _extra(parser: Any) -> None:
    parser.add_argument("--range", help="(internal) JSON of the binlog range to read")


async def _exec(sql: list[str]) -> Any:
    from etlsync.connectors.mysql.config import MysqlOptions, connect

    conn = await connect(MysqlOptions(host=HOST, port=PORT, database=DB))
    try:
        async with conn.cursor() as cur:
            out = None
            for s in sql:
                await cur.execute(s)
                out = await cur.fetchall()
            return out
    finally:
        conn.close()


async def _position() -> dict[str, Any]:
    rows = await _exec(["SHOW MASTER STATUS"])
    return {"file": rows[0][0], "pos": int(rows[0][1])}


async def prepare(rows: int) -> dict[str, dict[str, Any]]:
    table = f"bench_cdc_{uuid.uuid4().hex[:8]}"
    await _exec([f"CREATE TABLE `{table}` (id BIGINT PRIMARY KEY, qty INT, price DECIMAL(12,2),"
                 " name VARCHAR(40), created DATETIME(6), score DOUBLE, note TEXT)"])

    def values(lo: int, hi: int) -> str:
        return ",".join(f"({i}, {i % 1000}, {i % 100000}.25, 'customer {i}', "
                        f"'2024-01-01 00:00:00.{i % 1000000:06d}', {i}.5, 'n')" for i in range(lo, hi))

    ranges: dict[str, dict[str, Any]] = {}
    start = await _position()
    stmts = ["START TRANSACTION"]
    for lo in range(0, rows, 10_000):
        stmts.append(f"INSERT INTO `{table}` VALUES {values(lo, min(rows, lo + 10_000))}")
    stmts.append("COMMIT")
    await _exec(stmts)
    ranges["1tx"] = {"table": table, "start": start, "end": await _position(), "rows": rows}
    start = await _position()
    stmts = []
    for lo in range(rows, 2 * rows, 100):
        stmts.append(f"INSERT INTO `{table}` VALUES {values(lo, min(2 * rows, lo + 100))}")
    await _exec(stmts)
    ranges["100_per_tx"] = {"table": table, "start": start, "end": await _position(), "rows": rows}
    return ranges


async def run_etlsync_reader(r: dict[str, Any]) -> int:
    from etlsync.connectors.mysql.binlog import BinlogStream, Boundary, RowsEvent
    from etlsync.connectors.mysql.config import MysqlOptions

    table, end = r["table"], r["end"]
    stream = BinlogStream(MysqlOptions(host=HOST, port=PORT), r["start"], use_gtid=False,
                          table_filter=lambda d, t: t == table)
    await stream.connect()
    n = 0
    try:
        async for item in stream.items():
            if isinstance(item, RowsEvent):
                n += len(item.rows)
            elif isinstance(item, Boundary) and item.position["file"] == end["file"] and \
                    item.position["pos"] >= end["pos"]:
                break
    finally:
        stream.close()
    return n


async def run_etlsync_source(r: dict[str, Any]) -> int:
    from etlsync.connectors.mysql import MysqlCdcSource

    end = r["end"]
    source = MysqlCdcSource([r["table"]], host=HOST, port=PORT, database=DB, use_gtid=False)
    n = 0
    agen = source.read({"phase": "stream", "binlog": r["start"]})
    try:
        async for batch in agen:
            n += len(batch.rows)
            p = batch.position
            if p and p["binlog"]["file"] == end["file"] and p["binlog"]["pos"] >= end["pos"]:
                break
    finally:
        await agen.aclose()  # type: ignore[attr-defined]
    return n


def run_mysql_replication(r: dict[str, Any]) -> int:
    from pymysqlreplication import BinLogStreamReader  # type: ignore[import-untyped]
    from pymysqlreplication.row_event import WriteRowsEvent  # type: ignore[import-untyped]

    stream = BinLogStreamReader(
        connection_settings={"host": HOST, "port": PORT, "user": "root", "passwd": ""},
        server_id=int(uuid.uuid4().int % 1_000_000) + 1000, log_file=r["start"]["file"],
        log_pos=r["start"]["pos"], resume_stream=True, blocking=False,
        only_events=[WriteRowsEvent], only_tables=[r["table"]], only_schemas=[DB])
    n = 0
    end = r["end"]
    try:
        for ev in stream:
            if stream.log_file == end["file"] and ev.packet.log_pos > end["pos"]:
                break
            n += len(ev.rows)
    finally:
        stream.close()
    return n


def child(args: Any) -> None:
    if args.variant == "prepare":  # in its own process: the parent's peak RSS stays small
        print(json.dumps(asyncio.run(prepare(args.rows))))
        return
    r = json.loads(args.range)
    variant, shape = args.variant.split(":")
    if variant == "mysql_replication":  # imports are not part of the decode time
        import pymysqlreplication  # noqa: F401
    else:
        import etlsync.connectors.mysql  # noqa: F401
    t0 = time.perf_counter()
    if variant == "mysql_replication":
        n = run_mysql_replication(r)
    elif variant == "etlsync_reader":
        n = asyncio.run(run_etlsync_reader(r))
    else:
        n = asyncio.run(run_etlsync_source(r))
    seconds = time.perf_counter() - t0
    if n != r["rows"]:
        raise SystemExit(f"{variant}: decoded {n} rows, expected {r['rows']}")
    child_result(f"{variant}:{shape}", n, seconds)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], 200_000, _extra, services=True)
    if args.variant:
        child(args)
        return
    proc = subprocess.run([sys.executable, __file__, "--variant", "prepare", "--rows",
                           str(args.rows)], capture_output=True, text=True, check=True)
    ranges = json.loads(proc.stdout.strip().splitlines()[-1])
    results: dict[str, dict[str, Any]] = {}
    try:
        for shape, r in ranges.items():
            names = [f"{v}:{shape}" for v in VARIANTS]
            for name in names:  # one variant per subprocess; --range carries the binlog range
                res = run_variants(__file__, [name], args.rows, args.repeat,
                                   ["--range", json.dumps(r)])
                results.update(res)
            base = results.get(f"mysql_replication:{shape}", {}).get("rows_per_s")
            for name in names:
                res_row = results[name]
                if base and res_row.get("rows_per_s"):
                    res_row["ratio_vs_mysql_replication"] = round(res_row["rows_per_s"] / base, 2)
                res_row["shape"] = shape
    finally:
        asyncio.run(_exec([f"DROP TABLE IF EXISTS `{ranges['1tx']['table']}`"]))
    report(results, args.json)


if __name__ == "__main__":
    main()
