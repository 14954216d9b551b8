"""Shared benchmark plumbing: run each variant in its own subprocess, measure peak RSS, and
print one JSON object per line (``--json``) or a table."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def parse_args(description: str, default_rows: int, extra: Callable[[argparse.ArgumentParser], None]
               | None = None, services: bool = False) -> argparse.Namespace:
    """The common options; ``services``: in the parent process, configure the local
    PostgreSQL and MariaDB as the tests do and create their ``etlsync_test`` databases."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, default=default_rows, help="rows per variant")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; variants alternate within a round, the best round counts")
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions under valgrind (noise-free, slow)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if services and args.variant is None:
        prepare_services()
    return args


def prepare_services() -> None:
    """What the integration tests' fixtures do, for a fresh machine: ``wal_level=logical``
    and a ROW binlog (tests/support/services.py), and the ``etlsync_test`` databases."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from tests.support.services import ensure_services

    for line in ensure_services():
        print(f"# {line}", file=sys.stderr)
    for cmd in (["psql", "postgresql://postgres@127.0.0.1:5432/postgres", "-Atc",
                 "CREATE DATABASE etlsync_test"],
                ["mariadb", "-h127.0.0.1", "-uroot", "-e",
                 "CREATE DATABASE IF NOT EXISTS etlsync_test"]):
        # psql's "already exists" is the expected answer after the first run
        subprocess.run(cmd, capture_output=True, text=True)


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_result(name: str, rows: int, seconds: float, **extra: Any) -> None:
    """Called inside a variant's subprocess: print its measurement as JSON on stdout."""
    print(json.dumps({"name": name, "rows": rows, "seconds": round(seconds, 4),
                      "rows_per_s": round(rows / seconds) if seconds > 0 else None,
                      "peak_rss_mb": round(peak_rss_mb(), 1), **extra}))


def run_variants(script: str, variants: Sequence[str], rows: int, repeat: int = 1,
                 extra_args: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Run every variant of ``script`` in its own interpreter, ``repeat`` rounds with the
    variants alternating inside each round (so all see the same machine load); keep each
    variant's fastest round, with its round count."""
    results: dict[str, dict[str, Any]] = {}
    for _ in range(max(1, repeat)):
        for v in variants:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, script, "--variant", v, "--rows", str(rows),
                                   *extra_args], capture_output=True, text=True)
            if proc.returncode != 0:
                lines = proc.stderr.strip().splitlines()
                results.setdefault(v, {"name": v, "rows": rows, "error": lines[-1:] or ["failed"],
                                       "seconds": round(time.perf_counter() - t0, 3)})
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            best = results.get(v)
            if best is None or "error" in best or r["seconds"] < best["seconds"]:
                r["rounds"] = repeat
                results[v] = r
    return results


def report(results: dict[str, dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for r in results.values():
            print(json.dumps(r))
        return
    for r in results.values():
        if "error" in r:
            print(f"{r['name']:<28} ERROR {r['error']}")
            continue
        ratios = " ".join(f"{k}={v}" for k, v in r.items() if k.startswith("ratio_"))
        print(f"{r['name']:<28} {r['rows']:>9} rows {r['seconds']:>8.3f}s "
              f"{r['rows_per_s']:>11,} rows/s {r['peak_rss_mb']:>7.1f} MB  {ratios}")


def count_instructions(script: str, variants: Sequence[str], rows: int,
                       extra_args: Sequence[str] = ()) -> dict[str, int]:
    """Instructions each variant executes for ``rows`` rows, under callgrind, minus the same
    variant's run with 0 rows (interpreter start-up and imports). Deterministic: unaffected
    by other load on the machine."""
    import re
    import shutil
    import tempfile

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--callgrind needs valgrind (apt-get install valgrind)")
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants:
            total = []
            for n in (rows, 0):
                proc = subprocess.run(
                    [valgrind, "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
                     sys.executable, script, "--variant", v, "--rows", str(n), *extra_args],
                    capture_output=True, text=True)
                m = re.search(r"Collected : (\d+)", proc.stderr)
                if m is None:
                    raise SystemExit(f"callgrind failed for {v}: {proc.stderr[-500:]}")
                total.append(int(m.group(1)))
            counts[v] = total[0] - total[1]
    return counts


def add_instruction_ratios(results: dict[str, dict[str, Any]], counts: dict[str, int],
                           ours: str, baselines: dict[str, str]) -> None:
    """Put ``instructions`` on every result and ``ratio_instr_vs_*`` (baseline instructions
    / ours: higher is better, like the throughput ratios) on ours."""
    for v, c in counts.items():
        if v in results:
            results[v]["instructions"] = c
    for base, key in baselines.items():
        if counts.get(base) and counts.get(ours):
            results[ours][key.replace("ratio_", "ratio_instr_")] = round(counts[base] / counts[ours], 3)
