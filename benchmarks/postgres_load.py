"""Loading a 6-column orders CSV into PostgreSQL, side by side in one run, each variant in its
own process (so peak RSS is per variant):

- ``psql_copy``: ``psql -c "\\copy ... CSV HEADER"`` (the physical limit here);
- ``asyncpg_records``: a hand-written loop: csv module, type conversion, asyncpg
  ``copy_records_to_table`` in 10k-row batches;
- ``dlt_append`` / ``dlt_merge``: dlt with the postgres destination, typed dicts from a
  generator (merge on ``id``);
- ``etlsync_passthrough``: ``copy_csv_file``: the bytes go straight into COPY (the server
  parses them), progress stored per chunk for exactly-once resume;
- ``etlsync_typed``: ``Pipeline(CsvSource, [Cast], PostgresSink(append))``: record-form
  batches (no dicts), ``Cast`` converts column by column, the sink renders the typed values
  into COPY ``text`` (binary COPY for values it cannot render exactly), the position written
  in each batch's transaction;
- ``etlsync_upsert_merge``: the same with ``write_mode="upsert", conflict="merge"`` on ``id``;
- ``etlsync_typed_arrow`` / ``etlsync_upsert_merge_arrow``: the same two pipelines with
  ``CsvSource(engine="arrow")``: arrow-form batches (pyarrow parses each chunk of the file),
  ``Cast`` converts whole columns with pyarrow.compute where it proves the result equals its
  Python conversion, and the sink COPYs the typed columns as CSV rendered by pyarrow.

    python benchmarks/postgres_load.py --rows 1000000 --json [--callgrind]

``--callgrind`` also counts the client's instructions per row (up to 100,000 rows, start-up
subtracted) of the Python variants: immune to machine load.

Every variant that loads a table of its own is checked after its timing: row count and a
fingerprint of all values (sums, an md5 of the texts, the timestamp range) must equal
``psql_copy``'s (``values_match``).

The database is ``$ETLSYNC_BENCH_DSN`` (default the local test database).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import child_result, count_instructions, parse_args, report, run_variants

DSN = os.environ.get("ETLSYNC_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/etlsync_test")
# dlt insists on a password in its credentials; trust authentication ignores it
DLT_DSN = os.environ.get("ETLSYNC_BENCH_DLT_DSN", DSN.replace("postgres@", "postgres:unused@", 1))
VARIANTS = ["psql_copy", "asyncpg_records", "dlt_append", "dlt_merge", "etlsync_passthrough",
            "etlsync_typed", "etlsync_upsert_merge", "etlsync_typed_arrow",
            "etlsync_upsert_merge_arrow"]
COLUMNS = ["id", "customer_id", "product", "quantity", "price", "created_at"]
TYPES = {"id": "integer", "customer_id": "integer", "quantity": "integer", "price": "decimal",
         "created_at": "datetime"}
BATCH = 10_000
FINGERPRINT = (
    "SELECT count(*), sum(id), sum(customer_id), sum(quantity), sum(price), "
    "md5(string_agg(product || '|' || price::text, ',' ORDER BY id)), "
    "min(created_at), max(created_at), sum(extract(epoch FROM created_at)) "
    'FROM "{table}"')


def csv_path(rows: int) -> str:
    """The orders CSV with ``rows`` rows (made once, then reused)."""
    path = Path(tempfile.gettempdir()) / f"etlsync_orders_{rows}.csv"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        base = dt.datetime(2024, 1, 1)
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for i in range(rows):
                w.writerow([i, i % 50_000, f"product {i % 1000}", i % 9 + 1,
                            f"{(i % 100_000) / 100:.2f}",
                            (base + dt.timedelta(seconds=i)).isoformat(sep=" ")])
        tmp.rename(path)
    return str(path)


def table_for(variant: str) -> str:
    return f"bench_orders_{variant}"


def ddl(table: str, pk: bool) -> str:
    return (f'DROP TABLE IF EXISTS "{table}"; CREATE TABLE "{table}" (id bigint'
            f"{' PRIMARY KEY' if pk else ''}, customer_id bigint, product text, "
            "quantity integer, price numeric(10,2), created_at timestamp); "
            f"DELETE FROM _etlsync_state WHERE pipeline = '{table}';")


def psql(sql: str) -> None:
    subprocess.run(["psql", DSN, "-qc", sql], check=True, capture_output=True)


def typed_rows(path: str) -> Iterator[dict[str, Any]]:
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        for i, c, p, q, price, at in r:
            yield {"id": int(i), "customer_id": int(c), "product": p, "quantity": int(q),
                   "price": Decimal(price), "created_at": dt.datetime.fromisoformat(at)}


def record_batches(path: str) -> Iterator[list[tuple[Any, ...]]]:
    """Typed tuples from the CSV in lists of ``BATCH`` (the hand-written baseline's parser)."""
    batch: list[tuple[Any, ...]] = []
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        for i, c, p, q, price, at in r:
            batch.append((int(i), int(c), p, int(q), Decimal(price),
                          dt.datetime.fromisoformat(at)))
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


async def run_asyncpg(path: str, table: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(DSN)
    try:
        for batch in record_batches(path):
            await conn.copy_records_to_table(table, records=batch, columns=COLUMNS)
    finally:
        await conn.close()


def run_dlt(path: str, variant: str) -> None:
    import dlt

    merge = variant == "dlt_merge"
    workdir = tempfile.mkdtemp(prefix="etlsync_dlt_")
    dataset = f"bench_{variant}"
    psql(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
    try:
        pipeline = dlt.pipeline(pipeline_name=f"bench_{variant}", pipelines_dir=workdir,
                                destination=dlt.destinations.postgres(credentials=DLT_DSN),
                                dataset_name=dataset)

        @dlt.resource(name="orders", primary_key="id",
                      write_disposition="merge" if merge else "append")
        def orders() -> Iterator[dict[str, Any]]:
            yield from typed_rows(path)

        pipeline.run(orders())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        psql(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')


async def run_etlsync(path: str, variant: str, table: str) -> None:
    from etlsync import Pipeline
    from etlsync.connectors.files import CsvSource
    from etlsync.connectors.postgres import (
        PostgresCheckpointStore,
        PostgresSink,
        copy_csv_file,
    )
    from etlsync.operators import Cast

    if variant == "etlsync_passthrough":
        await copy_csv_file(path, DSN, table=table, pipeline=table)
        return
    upsert = variant.startswith("etlsync_upsert_merge")
    engine = "arrow" if variant.endswith("_arrow") else "python"
    sink = PostgresSink(DSN, table=table, write_mode="upsert" if upsert else "append",
                        primary_key=["id"] if upsert else (), conflict="merge")
    store = PostgresCheckpointStore(DSN)
    try:
        await Pipeline(CsvSource(path, batch_size=BATCH, engine=engine), [Cast(TYPES)], [sink],
                       name=table,
                       checkpoint_store=store).run()
    finally:
        await store.close()


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its waited-for children (``psql``)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def child(variant: str, rows: int) -> None:
    path = csv_path(rows)
    table = table_for(variant)
    if not variant.startswith("dlt"):
        psql(ddl(table, pk=variant.startswith("etlsync_upsert_merge")))
    if variant.startswith("dlt"):  # imports are not part of the load time
        import dlt  # noqa: F401
    elif variant.startswith("etlsync"):
        import etlsync.connectors.files
        import etlsync.connectors.postgres
        import etlsync.operators  # noqa: F401
    t0 = time.perf_counter()
    c0 = _cpu()
    if variant == "psql_copy":
        subprocess.run(["psql", DSN, "-qc", f"\\copy \"{table}\" FROM '{path}' CSV HEADER"],
                       check=True)
    elif variant == "asyncpg_records":
        asyncio.run(run_asyncpg(path, table))
    elif variant.startswith("dlt"):
        run_dlt(path, variant)
    else:
        asyncio.run(run_etlsync(path, variant, table))
    seconds = time.perf_counter() - t0
    extra: dict[str, Any] = {"client_cpu_s": round(_cpu() - c0, 3)}
    if variant == "psql_copy":  # the work happens in the psql child process
        extra["peak_rss_mb_psql"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    if not variant.startswith("dlt"):
        out = subprocess.run(["psql", DSN, "-Atc", f'SELECT count(*) FROM "{table}"'],
                             check=True, capture_output=True, text=True).stdout.strip()
        extra["rows_loaded"] = int(out)
        extra["fingerprint"] = subprocess.run(
            ["psql", DSN, "-Atc", FINGERPRINT.format(table=table)], check=True,
            capture_output=True, text=True).stdout.strip()
        psql(f'DROP TABLE IF EXISTS "{table}"; DELETE FROM _etlsync_state '
             f"WHERE pipeline = '{table}'")
    child_result(variant, rows, seconds, **extra)


def main() -> None:
    def variants_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")

    args = parse_args(__doc__ or "", 1_000_000, variants_option, services=True)
    if args.variant:
        child(args.variant, args.rows)
        return
    psql("CREATE TABLE IF NOT EXISTS _etlsync_state (pipeline text PRIMARY KEY, "
         "position jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
    csv_path(args.rows)
    variants = [v for v in args.variants.split(",") if v]
    results = run_variants(__file__, variants, args.rows, args.repeat)
    if "psql_copy" in results and results["psql_copy"].get("peak_rss_mb_psql") is not None:
        r = results["psql_copy"]
        r["peak_rss_mb"] = max(r["peak_rss_mb"], r["peak_rss_mb_psql"])
    reference = results.get("psql_copy", {}).get("fingerprint")
    for r in results.values():
        if r.get("fingerprint") is not None and reference is not None:
            r["values_match"] = r.pop("fingerprint") == reference
    results.get("psql_copy", {}).pop("fingerprint", None)
    speed = {k: v.get("rows_per_s") for k, v in results.items() if "error" not in v}
    for name, r in results.items():
        if "error" in r or not r.get("rows_per_s"):
            continue
        if speed.get("psql_copy") and name != "psql_copy":
            r["ratio_vs_psql_copy"] = round(r["rows_per_s"] / speed["psql_copy"], 3)
        if name.startswith("etlsync_typed") and speed.get("dlt_append"):
            r["ratio_vs_dlt_append"] = round(r["rows_per_s"] / speed["dlt_append"], 2)
        if name.startswith("etlsync_upsert_merge") and speed.get("dlt_merge"):
            r["ratio_vs_dlt_merge"] = round(r["rows_per_s"] / speed["dlt_merge"], 2)
        if name.startswith("etlsync_typed") and speed.get("asyncpg_records"):
            r["ratio_vs_asyncpg_records"] = round(r["rows_per_s"] / speed["asyncpg_records"], 2)
    if args.callgrind:  # client instructions per row: immune to machine load
        cg_rows = min(args.rows, 100_000)
        counted = [v for v in variants if v == "asyncpg_records" or v.startswith(
            ("etlsync_typed", "etlsync_upsert_merge"))]
        for v, c in count_instructions(__file__, counted, cg_rows).items():
            if v in results:
                results[v]["client_instr_per_row"] = round(c / cg_rows)
        base = results.get("asyncpg_records", {}).get("client_instr_per_row")
        ours = results.get("etlsync_typed", {}).get("client_instr_per_row")
        if base and ours:
            results["etlsync_typed"]["ratio_instr_vs_asyncpg_records"] = round(base / ours, 3)
    report(results, args.json)


if __name__ == "__main__":
    main()
