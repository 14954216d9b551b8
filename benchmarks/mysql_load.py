"""Bulk load of a CSV into MariaDB: etlsync (CsvSource -> MysqlSink append, LOAD DATA LOCAL
from memory) vs ``LOAD DATA LOCAL INFILE`` of the file (the limit) and aiomysql
``executemany`` in 1,000-row batches.

    python benchmarks/mysql_load.py --rows 1000000 --json
"""

from __future__ import annotations

import asyncio
import csv
import importlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import child_result, parse_args, peak_rss_mb, report, run_variants

HOST = os.environ.get("ETLSYNC_TEST_MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("ETLSYNC_TEST_MYSQL_PORT", "3306"))
DB = "etlsync_test"
VARIANTS = ["load_data_infile", "etlsync", "aiomysql_executemany"]
DDL = ("(id BIGINT PRIMARY KEY, customer VARCHAR(40), product VARCHAR(40), qty INT, "
       "price DECIMAL(12,2), created DATETIME) ENGINE=InnoDB")
COLS = ["id", "customer", "product", "qty", "price", "created"]


def _extra(parser: Any) -> None:
    parser.add_argument("--csv", help="(internal) the CSV file")


def make_csv(path: str, rows: int) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLS)
        for i in range(rows):
            w.writerow([i, f"customer {i % 5000}", f"product {i % 300}", i % 20 + 1,
                        f"{(i * 37) % 100000 / 100:.2f}",
                        f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d} 12:{i % 60:02d}:00"])


async def _conn(**kw: Any) -> Any:
    from etlsync.connectors.mysql.config import MysqlOptions, connect

    return await connect(MysqlOptions(host=HOST, port=PORT, database=DB), **kw)


async def _create(table: str) -> None:
    conn = await _conn()
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE TABLE `{table}` {DDL}")
    finally:
        conn.close()


async def _count_and_drop(table: str) -> int:
    conn = await _conn()
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            n = int((await cur.fetchone())[0])
            await cur.execute(f"DROP TABLE `{table}`")
            return n
    finally:
        conn.close()


def load_data_infile(path: str, table: str) -> None:
    """The limit: the server parses the file, sent by the C client (``mariadb``/``mysql``)."""
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        raise SystemExit("no mariadb/mysql client for the LOAD DATA baseline")
    sql = (f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE `{table}` FIELDS TERMINATED BY ',' "
           "OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\r\\n' IGNORE 1 LINES")
    subprocess.run([client, "-h", HOST, "-P", str(PORT), "-uroot", "--local-infile=1", DB,
                    "-e", sql], check=True)


def _records(path: str) -> Iterator[list[str]]:
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        yield from reader


async def executemany(path: str, table: str) -> None:
    conn = await _conn()
    sql = f"INSERT INTO `{table}` ({', '.join(COLS)}) VALUES (%s, %s, %s, %s, %s, %s)"
    try:
        async with conn.cursor() as cur:
            batch: list[list[str]] = []
            for rec in _records(path):
                batch.append(rec)
                if len(batch) == 1000:
                    await cur.executemany(sql, batch)
                    batch = []
            if batch:
                await cur.executemany(sql, batch)
    finally:
        conn.close()


async def etlsync(path: str, table: str) -> None:
    from etlsync.connectors.files.csvfile import CsvSource
    from etlsync.connectors.mysql import MysqlSink
    from etlsync.core.pipeline import Pipeline

    sink = MysqlSink(host=HOST, port=PORT, database=DB, table=table, write_mode="append",
                     exactly_once=False)
    await Pipeline(CsvSource(path, batch_size=10_000), sinks=[sink], name=table).run()


def child(args: Any) -> None:
    table = f"bench_load_{uuid.uuid4().hex[:8]}"
    asyncio.run(_create(table))
    if args.variant == "etlsync":  # imports are not part of the load time
        importlib.import_module("etlsync.connectors.files.csvfile")
        importlib.import_module("etlsync.connectors.mysql")
    t0 = time.perf_counter()
    if args.variant == "load_data_infile":
        load_data_infile(args.csv, table)
    else:
        fn = {"etlsync": etlsync, "aiomysql_executemany": executemany}[args.variant]
        asyncio.run(fn(args.csv, table))
    seconds = time.perf_counter() - t0
    n = asyncio.run(_count_and_drop(table))
    if n != args.rows:
        raise SystemExit(f"{args.variant}: loaded {n} rows, expected {args.rows}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    child_result(args.variant, n, seconds, peak_rss_mb=round(max(peak_rss_mb(), children), 1))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], 1_000_000, _extra, services=True)
    if args.variant:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "orders.csv")
        make_csv(path, args.rows)
        results = run_variants(__file__, VARIANTS, args.rows, args.repeat, ["--csv", path])
    limit = results.get("load_data_infile", {}).get("rows_per_s")
    execm = results.get("aiomysql_executemany", {}).get("rows_per_s")
    for r in results.values():
        if limit and r.get("rows_per_s"):
            r["ratio_vs_load_data"] = round(r["rows_per_s"] / limit, 2)
        if execm and r.get("rows_per_s"):
            r["ratio_vs_executemany"] = round(r["rows_per_s"] / execm, 2)
    report(results, args.json)


if __name__ == "__main__":
    main()
