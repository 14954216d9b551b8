"""pgoutput decoding alone (no server): what the run reader's row layouts gain on rows whose
value lengths repeat, and what they cost on rows whose lengths never settle.

A stream of ``--rows`` Insert messages (CopyData-framed, as the walsender sends them) is built
in memory for two tables and decoded, in 1 MiB reads like ``read_decoded``'s, by:

- ``layouts``: ``PgOutputDecoder.decode_chunk`` as etlsync runs it;
- ``no_layouts``: the same with layouts switched off (column by column, the reader before);
- ``per_message``: ``decode_record`` once per message, as the psycopg2 loop of
  benchmarks/postgres_cdc.py decodes (without libpq's framing: a lower bound of its cost).

Tables: ``regular``: the columns of benchmarks/postgres_cdc.py (int, ``'row ' || g``,
numeric ``g * 1.25``, one ``now()`` timestamptz, float ``g / 7.0``); ``irregular``: an int
and two texts of random lengths 0-40 (a size's bytes split in many ways: layouts rarely
apply, and pause).

    python benchmarks/pgoutput_decode.py --rows 200000 --json [--callgrind]

``--callgrind`` also counts each variant's instructions (up to 50,000 rows, scaled; building
the stream and start-up subtracted): ``ratio_instr_vs_*`` is immune to machine load.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    add_instruction_ratios,
    child_result,
    count_instructions,
    parse_args,
    report,
    run_variants,
)

TABLES = {"regular": [(23, "id"), (25, "v"), (1700, "n"), (1184, "ts"), (701, "f")],
          "irregular": [(23, "id"), (25, "a"), (25, "b")]}
KINDS = ("layouts", "no_layouts", "per_message")
BUILD_ROWS = "ETLSYNC_BENCH_BUILD_ROWS"


def _values(table: str, g: int, rnd: random.Random) -> tuple[str, ...]:
    if table == "regular":
        return (str(g), f"row {g}", f"{g * 1.25:.2f}", "2026-11-29 14:12:41.123456+00",
                repr(g / 7.0))
    return (str(g), "x" * rnd.randint(0, 40), "y" * rnd.randint(0, 40))


def _payload(body: bytes) -> bytes:
    return b"w" + struct.pack("!QQq", 1, 2, 3) + body


def stream(table: str, rows: int) -> tuple[bytes, list[bytes]]:
    """The Relation message and the Inserts, each a CopyData payload."""
    cols = TABLES[table]
    rel = b"R" + struct.pack("!I", 1) + b"public\0" + table.encode() + b"\0d"
    rel += struct.pack("!h", len(cols))
    for i, (oid, name) in enumerate(cols):
        rel += bytes([i == 0]) + name.encode() + b"\0" + struct.pack("!Ii", oid, -1)
    rnd = random.Random(7)
    inserts = []
    for g in range(1, rows + 1):
        body = b"I" + struct.pack("!I", 1) + b"N" + struct.pack("!h", len(cols))
        for v in _values(table, g, rnd):
            raw = v.encode()
            body += b"t" + struct.pack("!i", len(raw)) + raw
        inserts.append(_payload(body))
    return _payload(rel), inserts


def child(variant: str, rows: int) -> None:
    from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder
    from etlsync.connectors.postgres.replication.protocol import copydata

    kind, _, table = variant.partition(":")
    # --callgrind's baseline run (0 rows) builds the same stream and decodes nothing
    relation, inserts = stream(table, int(os.environ.get(BUILD_ROWS, rows)))
    decoder = PgOutputDecoder()
    decoder.decode(relation, 25)
    if kind == "no_layouts":
        decoder.relations[1].fast_run.layouts.worth_it = lambda: False
    data = copydata(inserts)
    decoded = 0
    if rows == 0:
        return
    t0 = time.perf_counter()
    if kind == "per_message":
        decode = decoder.decode_record
        for payload in inserts:
            decoded += decode(payload, 25)[0] == "I"
    else:
        pos = 0
        while pos < len(data):
            events, used = decoder.decode_chunk(data[pos:pos + (1 << 20)], 0)
            pos += used
            decoded += sum(len(ev[2]) for ev in events if ev[0] == "I*")
    seconds = time.perf_counter() - t0
    layouts = decoder.relations[1].fast_run.layouts
    child_result(variant, decoded, seconds, layouts=layouts.count)


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], 200_000)
    if args.variant:
        child(args.variant, args.rows)
        return
    variants = [f"{k}:{t}" for t in TABLES for k in KINDS]
    results = run_variants(__file__, variants, args.rows, args.repeat)
    for t in TABLES:
        ours = results.get(f"layouts:{t}")
        for base in KINDS[1:]:
            other = results.get(f"{base}:{t}")
            if ours and other and "error" not in ours and "error" not in other:
                ours[f"ratio_vs_{base}"] = round(other["seconds"] / ours["seconds"], 3)
    if args.callgrind:
        cg_rows = min(args.rows, 50_000)
        os.environ[BUILD_ROWS] = str(cg_rows)
        for t in TABLES:
            counts = count_instructions(__file__, [f"{k}:{t}" for k in KINDS], cg_rows)
            counts = {k: v * args.rows // cg_rows for k, v in counts.items()}
            add_instruction_ratios(results, counts, f"layouts:{t}",
                                   {f"{k}:{t}": f"ratio_vs_{k}" for k in KINDS[1:]})
    report(results, args.json)


if __name__ == "__main__":
    main()
