"""CSV -> SQLite load: etlsync vs the ``sqlite3`` CLI ``.import`` and a hand-written loop.

    python benchmarks/sqlite_load.py --rows 1000000 --json

Each variant runs in its own subprocess (peak RSS is per variant) on the same generated
6-column orders CSV; every target is checked for the right row count. ``ratio_*`` figures
are throughput ratios: the baseline's seconds divided by the variant's (1.0 = as fast,
above 1 = faster). With ``--repeat N`` each variant runs N times, alternating, and the
median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = ("etlsync", "etlsync_json_batches", "python_loop", "sqlite3_cli")


def make_csv(path: Path, rows: int) -> None:
    statuses = ("paid", "open", "shipped", "cancelled")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "customer", "quantity", "price", "status", "created_at"])
        for i in range(rows):
            w.writerow([i, f"customer {i % 5000}", i % 17 + 1, f"{i % 1000}.{i % 100:02d}",
                        statuses[i % 4], f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d} 12:{i % 60:02d}:00"])


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def import_etlsync() -> float:
    """Import etlsync (reported apart as ``import_s``: a one-time cost, not load work)."""
    t0 = time.perf_counter()

    return time.perf_counter() - t0


def run_etlsync(src: Path, db: Path, json_batches: bool = False) -> None:
    from etlsync import Pipeline
    from etlsync.connectors.files import CsvSource
    from etlsync.connectors.sqlite import SqliteSink
    from etlsync.connectors.sqlite.checkpoint import SqliteCheckpointStore

    async def main() -> None:
        sink = SqliteSink(db, table="orders", json_batches=json_batches)
        await Pipeline(CsvSource(src), [], [sink], name="bench",
                       checkpoint_store=SqliteCheckpointStore(db)).run()

    asyncio.run(main())


def run_python_loop(src: Path, db: Path) -> None:
    conn = sqlite3.connect(db)
    with src.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        cols = ", ".join(f'"{c}"' for c in header)
        conn.execute(f"CREATE TABLE orders ({cols})")
        conn.executemany(f"INSERT INTO orders VALUES ({', '.join('?' * len(header))})", reader)
    conn.commit()
    conn.close()


def run_sqlite3_cli(src: Path, db: Path) -> float:
    exe = shutil.which("sqlite3")
    if exe is None:
        raise FileNotFoundError("sqlite3 command-line tool not installed (apt-get install sqlite3)")
    subprocess.run([exe, str(db), ".mode csv", f".import {src} orders"], check=True)
    return peak_rss_mb(children=True)


def child(variant: str, src: Path, db: Path) -> dict[str, Any]:
    """Run one variant in this process and measure it."""
    import_s = import_etlsync() if variant.startswith("etlsync") else 0.0
    t0 = time.perf_counter()
    c0 = cpu_seconds()
    rss = None
    if variant.startswith("etlsync"):
        run_etlsync(src, db, json_batches=variant == "etlsync_json_batches")
    elif variant == "python_loop":
        run_python_loop(src, db)
    else:
        rss = run_sqlite3_cli(src, db)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    conn = sqlite3.connect(db)
    loaded = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    conn.close()
    return {"seconds": seconds, "cpu_s": cpu, "loaded": loaded, "import_s": round(import_s, 3),
            "peak_rss_mb": round(rss if rss is not None else peak_rss_mb(), 1)}


def measure(variant: str, src: Path, workdir: Path) -> dict[str, Any]:
    db = workdir / f"{variant}.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, __file__, "--child", variant, "--csv", str(src),
                           "--db", str(db)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def count_instructions(variant: str, src: Path, empty: Path, workdir: Path) -> int:
    """Instructions ``variant`` executes loading ``src`` under callgrind, minus its run on
    ``empty`` (header only: start-up, imports, table creation). Unaffected by machine load;
    valgrind runs one thread at a time, so GIL hand-overs cost no waiting here."""
    import re

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--callgrind needs valgrind (apt-get install valgrind)")
    counts = []
    for path in (src, empty):
        db = workdir / f"cg_{variant}.db"
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        proc = subprocess.run([valgrind, "--tool=callgrind",
                               f"--callgrind-out-file={workdir}/cg.out", sys.executable,
                               __file__, "--child", variant, "--csv", str(path), "--db", str(db)],
                              capture_output=True, text=True)
        m = re.search(r"Collected : (\d+)", proc.stderr)
        if m is None:
            raise SystemExit(f"callgrind failed for {variant}: {proc.stderr[-500:]}")
        counts.append(int(m.group(1)))
    return counts[0] - counts[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true", help="one JSON object per variant and line")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--callgrind", action="store_true",
                    help="also count instructions of etlsync and python_loop under valgrind "
                         "(load-immune; use --rows 50000 or so: valgrind is ~50x slower)")
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.csv, args.db)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="etlsync-sqlite-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / f"orders_{args.rows}.csv"
    if not src.exists():
        make_csv(src, args.rows)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeat):
        for v in VARIANTS:
            runs[v].append(measure(v, src, workdir))
    results: dict[str, dict[str, Any]] = {}
    for v in VARIANTS:
        ok = [r for r in runs[v] if "error" not in r]
        if not ok:
            results[v] = {"name": v, "rows": args.rows, "error": runs[v][0]["error"]}
            continue
        secs = statistics.median(r["seconds"] for r in ok)
        cpu = statistics.median(r["cpu_s"] for r in ok)
        results[v] = {"name": v, "rows": args.rows, "seconds": round(secs, 3),
                      "rows_per_s": round(args.rows / secs), "cpu_s": round(cpu, 3),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
                      "rows_loaded_ok": all(r["loaded"] == args.rows for r in ok),
                      "import_s": statistics.median(r["import_s"] for r in ok),
                      "runs": len(ok), "load_avg_1m": round(os.getloadavg()[0], 2)}
    if args.callgrind:
        empty = workdir / "orders_0.csv"
        make_csv(empty, 0)
        instr = {v: count_instructions(v, src, empty, workdir) for v in ("etlsync", "python_loop")}
        for v, n in instr.items():
            results[v]["instructions"] = n
        results["etlsync"]["ratio_instr_vs_python_loop"] = round(
            instr["python_loop"] / instr["etlsync"], 3)
    for v, res in results.items():
        for base in ("sqlite3_cli", "python_loop"):
            key = f"ratio_vs_{base}"
            b = results.get(base, {})
            both = "seconds" in b and "seconds" in res
            res[key] = round(b["seconds"] / res["seconds"], 3) if both else None
            res[f"cpu_{key}"] = round(b["cpu_s"] / res["cpu_s"], 3) if both else None
        if v == "sqlite3_cli" and "error" in res:
            res["note"] = "baseline tool absent: ratio_vs_sqlite3_cli is null"
        if args.json:
            print(json.dumps(res))
        else:
            shown = {k: res.get(k) for k in ("seconds", "cpu_s", "peak_rss_mb",
                                               "ratio_vs_sqlite3_cli", "ratio_vs_python_loop",
                                               "cpu_ratio_vs_python_loop", "error")}
            print(f"{v:12s} " + "  ".join(f"{k}={val}" for k, val in shown.items()
                                          if val is not None))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
