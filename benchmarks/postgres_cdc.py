"""PostgreSQL CDC: decode-only rate of etlsync's replication client vs a psycopg2
LogicalReplicationConnection loop (same pgoutput decoder), end-to-end rate into a PostgreSQL
sink, and replication lag at a steady 5,000 changes/s.

    python benchmarks/postgres_cdc.py --rows 200000 --json [--callgrind]

``--callgrind`` also counts the client's instructions of the decode variants (up to 20,000
rows, scaled; start-up subtracted): ``ratio_instr_vs_psycopg2`` is load-immune.

Every decode/read variant also reports the walsender's own CPU (``server_*_us_per_event``:
utime and stime of its process, found in ``pg_stat_activity`` by application name) and, with
``--server-trace`` where ``perf`` is installed, its system calls and packets per event. The
kinds ``decode_etlsync_rcvbuf`` (SO_RCVBUF of 64 KiB set before the connect),
``decode_etlsync_pause`` (socket reading paused except while the client waits for data) and
``read_etlsync_binary`` (pgoutput ``binary 'true'``, framing only) are run only when named in
``--only``: experiments on how the client's read pattern and the value format change the
server's cost. So are ``decode_etlsync_sql`` and ``decode_etlsync_sql_rows``: the same
slot's backlog read through the SQL decoding interface instead of the streaming protocol (a
temporary copy of the slot, ``pg_logical_slot_get_binary_changes`` in calls of
``ETLSYNC_BENCH_SQL_CHANGES`` changes, default 20,000, the next call running on the server
while the client decodes the current result; the server figures are then that backend's),
and ``decode_psycopg2_sql``: the same calls from psycopg2 (sequential, ``decode_record`` per
message). ``--check`` adds a digest of the changes decoded by decode_etlsync and the
etlsync SQL variants and compares them (slower: not for timing).

``--rows`` rows are written once in one transaction and once in transactions of 100, each
shape read through its own slot (created before the data, never acknowledged, so every
variant reads the same WAL). Each variant runs in its own subprocess (peak RSS per variant).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    add_instruction_ratios,
    child_result,
    count_instructions,
    parse_args,
    report,
    run_variants,
)

DSN = os.environ.get("ETLSYNC_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/etlsync_test")
SHAPES = ("1tx", "100x")
COLUMNS = "id int PRIMARY KEY, v text, n numeric(12,2), ts timestamptz, f double precision"
LAG_RATE = 5000
E2E_TARGET = 50_000
LAG_P99_TARGET_MS = 250.0


def names(run: str, shape: str) -> dict[str, str]:
    return {"table": f"bench_cdc_{run}_{shape}", "target": f"bench_cdc_{run}_{shape}_t",
            "slot": f"bench_cdc_{run}_{shape}", "pub": f"bench_cdc_{run}_{shape}"}


# -- the walsender's own cost ---------------------------------------------------------------
class Walsender:
    """CPU seconds (user, system) of the walsender serving ``app`` (or of any server process
    by pid: the SQL variant's backend), read from /proc (the server runs on this host); with
    ``trace``, ``perf stat`` counts its system calls, transmitted packets and wake-ups while
    it runs."""

    EVENTS = ("syscalls:sys_enter_sendto", "syscalls:sys_enter_recvfrom", "net:net_dev_xmit",
              "sched:sched_wakeup")

    def __init__(self, pid: int, trace: bool) -> None:
        self.pid, self.perf, self.out = pid, None, f"/tmp/etlsync-bench-perf-{pid}.txt"
        if trace:
            import subprocess

            self.perf = subprocess.Popen(
                ["perf", "stat", "-x", ",", "-e", ",".join(self.EVENTS), "-p", str(pid),
                 "-o", self.out], stderr=subprocess.DEVNULL)
            time.sleep(0.3)  # perf attaches
        self.start = self.cpu()

    @staticmethod
    async def find(app: str, trace: bool = False) -> Walsender:
        import asyncpg

        conn = await asyncpg.connect(DSN)
        try:
            for _ in range(100):
                pid = await conn.fetchval("SELECT pid FROM pg_stat_activity WHERE backend_type ="
                                          " 'walsender' AND application_name = $1", app)
                if pid:
                    return Walsender(pid, trace)
                await asyncio.sleep(0.02)
        finally:
            await conn.close()
        raise RuntimeError(f"no walsender with application_name {app!r}")

    def cpu(self) -> tuple[float, float]:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def result(self, events: int) -> dict[str, Any]:
        """The walsender's cost per event since it was found (call when the client stops)."""
        user, sys_ = (b - a for a, b in zip(self.start, self.cpu(), strict=True))
        events = max(events, 1)
        out = {"server_cpu_s": round(user + sys_, 2),
               "server_us_per_event": round((user + sys_) / events * 1e6, 2),
               "server_sys_us_per_event": round(sys_ / events * 1e6, 2)}
        if self.perf is not None:
            import signal

            self.perf.send_signal(signal.SIGINT)
            self.perf.wait()
            with open(self.out) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) > 2 and parts[0].isdigit():
                        name = parts[2].split(":")[-1].replace("sys_enter_", "")
                        out[f"server_{name}_per_event"] = round(int(parts[0]) / events, 3)
            os.unlink(self.out)
        return out


def _app_name() -> str:
    return f"bench_cdc_{os.getpid()}"


TRACE = "--server-trace" in sys.argv


# -- setup ---------------------------------------------------------------------------------
async def setup(run: str, rows: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(DSN)
    try:
        for shape in SHAPES:
            n = names(run, shape)
            await conn.execute(f'CREATE TABLE "{n["table"]}" ({COLUMNS})')
            await conn.execute(f'CREATE TABLE "{n["target"]}" ({COLUMNS})')
            await conn.execute(f'CREATE PUBLICATION "{n["pub"]}" FOR TABLE "{n["table"]}"')
            await conn.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                               n["slot"])
            values = ("SELECT g, 'row ' || g, g * 1.25, now(), g / 7.0 "
                      "FROM generate_series({lo}, {hi}) g")
            if shape == "1tx":
                await conn.execute(f'INSERT INTO "{n["table"]}" '
                                   + values.format(lo=1, hi=rows))
            else:
                await conn.execute(
                    f"DO $$ BEGIN FOR i IN 0..{rows // 100 - 1} LOOP "
                    f'INSERT INTO "{n["table"]}" '
                    + values.format(lo="i * 100 + 1", hi="i * 100 + 100")
                    + "; COMMIT; END LOOP; END $$")
    finally:
        await conn.close()


async def teardown(run: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(DSN)
    try:
        for shape in (*SHAPES, "lag", "lag_null"):
            n = names(run, shape)
            await conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                               "pg_replication_slots WHERE slot_name = $1", n["slot"])
            await conn.execute(f'DROP PUBLICATION IF EXISTS "{n["pub"]}"')
            await conn.execute(f'DROP TABLE IF EXISTS "{n["table"]}", "{n["target"]}"')
        if await conn.fetchval("SELECT to_regclass('_etlsync_state')") is not None:
            await conn.execute("DELETE FROM _etlsync_state WHERE pipeline LIKE $1",
                               f"bench_cdc_{run}%")
    finally:
        await conn.close()


# -- variants (run in subprocesses) --------------------------------------------------------
async def _connect(mode: str = "") -> Any:
    """etlsync's replication connection; ``mode`` ``rcvbuf``: on a socket with SO_RCVBUF of
    64 KiB set before the connect (TCP fixes the window scale at the handshake); ``pause``:
    socket reading paused except while the client waits for data (the kernel buffer fills
    while it decodes or waits to coalesce). Both patch the client for this experiment only."""
    import socket

    from etlsync.connectors.postgres.replication import protocol
    from etlsync.connectors.postgres.replication.conninfo import parse_dsn

    params = parse_dsn(DSN)
    loop = asyncio.get_running_loop()
    if mode == "rcvbuf":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sock.setblocking(False)
        await loop.sock_connect(sock, (params.host, params.port))
        connect = loop.create_connection

        def on_sock(factory: Any, *args: Any, **kw: Any) -> Any:
            loop.create_connection = connect  # type: ignore[method-assign]
            return connect(factory, sock=sock)

        loop.create_connection = on_sock  # type: ignore[method-assign, assignment]
    if mode == "pause":
        class PullWire(protocol._Wire):
            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                if not self.paused and self.transport is not None:
                    self.transport.pause_reading()
                    self.paused = True

            async def wait(self) -> None:
                if self.paused and self.transport is not None:
                    self.transport.resume_reading()
                    self.paused = False
                await super().wait()

        protocol._Wire = PullWire  # type: ignore[misc]
    return await protocol.ReplicationConnection(
        params, {"application_name": _app_name()}).connect()


def _count(events: list[tuple[Any, ...]], crc: int) -> tuple[int, int, bool]:
    """The changes among ``events``, the ``--check`` digest so far and whether a keepalive
    asked for a reply."""
    if CHECK:
        crc = _digest(crc, events)
    seen, reply = 0, False
    for ev in events:
        kind = ev[0]
        if kind == "I*":
            seen += len(ev[2])
        elif kind in ("I", "U", "D"):
            seen += 1
        elif kind == "k" and ev[2]:
            reply = True
    return seen, crc, reply


async def decode_etlsync(n: dict[str, str], rows: int, mode: str = "") -> tuple[float, float]:
    """etlsync's client as PostgresCdcSource runs it: ``read_decoded`` hands each chunk of
    the stream to ``decode_chunk``, which frames and decodes it in one call (Inserts as value
    tuples, one event per run). Near the end a read takes about as many bytes as the changes
    still wanted (at the mean size so far), so that like the psycopg2 loop, which stops at
    the ``rows``-th change, it decodes hardly any more (under ``--callgrind``'s 20,000 rows
    a whole chunk of overshoot would count as cost)."""
    from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder

    conn = await _connect(mode)
    server = await Walsender.find(_app_name(), TRACE)
    decode_chunk = PgOutputDecoder().decode_chunk
    taken = [0]  # bytes decoded so far
    first: list[float] = []  # when the first XLogData came (keepalives come first)

    def decode(data: bytes, pos: int) -> tuple[list[tuple[Any, ...]], int]:
        now = time.perf_counter()
        events, end = decode_chunk(data, pos)
        taken[0] += end - pos
        if not first and any(ev[0] != "k" for ev in events):
            first.append(now)
        return events, end

    seen = crc = 0
    t0, c0 = time.perf_counter(), time.process_time()
    await conn.start_replication(n["slot"], 0, {"proto_version": "1",
                                                "publication_names": n["pub"]})
    while seen < rows:
        limit = (rows - seen) * taken[0] // seen + 64 if seen else 1 << 20
        events = await conn.read_decoded(decode, min(1 << 20, limit))
        got, crc, reply = _count(events, crc)
        seen += got
        if reply:  # a keepalive asked for a reply
            conn.send_status(0, False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    SERVER.update(server.result(rows))
    _stream_times(t0, first[0], seconds)
    if CHECK:
        SERVER["records_digest"] = crc
    conn.abort()
    return seconds, cpu


def _stream_times(t0: float, first: float, seconds: float) -> None:
    """``first_data_s``: from START_REPLICATION to the first data, the server's alone (in one
    transaction, it decodes the whole transaction before it sends its first change);
    ``stream_s``: from there to the last change, when the client's speed can show."""
    SERVER.update(first_data_s=round(first - t0, 4), stream_s=round(t0 + seconds - first, 4))


SERVER: dict[str, Any] = {}
"""The walsender's figures of the variant that ran in this process."""

CHECK = "--check" in sys.argv
SQL_CHANGES = int(os.environ.get("ETLSYNC_BENCH_SQL_CHANGES", "20000"))
_XLOG_HEADER = b"w" + bytes(24)  # a fake XLogData header: decode_chunk reads byte 25 on


def _digest(crc: int, events: list[tuple[Any, ...]]) -> int:
    """``crc`` folded with the changes among ``events`` (relation by name, values by repr):
    equal digests mean the same changes with the same values in the same order."""
    import zlib

    for ev in events:
        kind = ev[0]
        if kind == "I*":  # per record: runs may be cut at different places
            name = ev[1].name
            for record in ev[2]:
                crc = zlib.crc32(repr(("I", name, record)).encode(), crc)
        elif kind in ("I", "U", "D"):
            crc = zlib.crc32(repr((kind, *ev[1:])).encode(), crc)
    return crc


async def decode_etlsync_sql(n: dict[str, str], rows: int, per_row: bool = False
                             ) -> tuple[float, float]:
    """The slot's backlog through the SQL decoding interface: the slot is copied to a
    temporary slot (the original stays where it is, as an at-least-once catch-up needs), and
    ``pg_logical_slot_get_binary_changes`` on the copy returns up to ``SQL_CHANGES`` pgoutput
    messages per call (more when one transaction is longer: it returns whole transactions),
    each as a fake XLogData frame, decoded by the same ``decode_chunk``: by default the server
    prepends the frame header and returns a call's messages as one ``bytea[]`` (``array_agg``:
    asyncpg makes the list of messages in C); ``rows``: one row per message, the header added
    by the client. The server materializes a call's whole result before sending it, so the
    overlap comes from sending the next call before decoding the current result (one
    connection, one call in flight)."""
    import asyncpg

    from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder
    from etlsync.connectors.postgres.replication.protocol import copydata

    conn = await asyncpg.connect(DSN, server_settings={"application_name": _app_name()})
    server = Walsender(await conn.fetchval("SELECT pg_backend_pid()"), TRACE)
    decode_chunk = PgOutputDecoder().decode_chunk
    tmp = f"{n['slot']}_sql_{os.getpid()}"
    changes = ("pg_logical_slot_get_binary_changes($1, NULL, $2, "
               "'proto_version', '1', 'publication_names', $3)")
    if per_row:
        stmt = await conn.prepare(f"SELECT data FROM {changes}")
    else:
        header = "\\x" + _XLOG_HEADER.hex()
        stmt = await conn.prepare(
            f"SELECT coalesce(array_agg('{header}'::bytea || data), '{{}}') FROM {changes}")

    async def call() -> list[bytes]:
        if per_row:
            return [_XLOG_HEADER + r[0] for r in await stmt.fetch(tmp, SQL_CHANGES, n["pub"])]
        msgs: list[bytes] = await stmt.fetchval(tmp, SQL_CHANGES, n["pub"])
        return msgs

    seen = calls = crc = 0
    waited = first_wait = served = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    await conn.execute("SELECT pg_copy_logical_replication_slot($1, $2, true)", n["slot"], tmp)
    pending: asyncio.Future[list[bytes]] | None = asyncio.ensure_future(call())
    while seen < rows:
        if pending is None:
            raise RuntimeError(f"the backlog ended after {seen} of {rows} changes")
        w0 = time.perf_counter()
        msgs = await pending
        waited += time.perf_counter() - w0
        served = sum(server.cpu()) - sum(server.start)  # the calls so far, none in flight
        if not calls:
            first_wait = waited
        calls += 1
        if len(msgs) >= SQL_CHANGES:  # maybe more: the server decodes it meanwhile
            pending = asyncio.ensure_future(call())
            await asyncio.sleep(0)  # the task sends the call
        else:  # fewer than asked: the end of the WAL
            pending = None
        data, pos = copydata(_first_changes(msgs, rows - seen)), 0
        while pos < len(data):
            events, pos = decode_chunk(data, pos)
            got, crc, _ = _count(events, crc)
            seen += got
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if pending is not None:  # a call sent before the rows-th change was decoded: the
        await pending  # server's cost counts it whole (it may re-read the whole backlog)
    SERVER.update(server.result(rows))
    # without that last call: the calls whose results were decoded
    SERVER["server_us_per_event_used_calls"] = round(served / rows * 1e6, 2)
    SERVER.update(sql_calls=calls, sql_changes_per_call=SQL_CHANGES,
                  client_wait_s=round(waited, 4), client_first_wait_s=round(first_wait, 4))
    if CHECK:
        SERVER["records_digest"] = crc
    await conn.close()  # the temporary slot goes with the session
    return seconds, cpu


def _first_changes(msgs: list[bytes], k: int) -> list[bytes]:
    """``msgs`` up to and including the ``k``-th Insert/Update/Delete message, so that the
    etlsync variants decode exactly as many events as the psycopg2 loop, which stops at the
    ``rows``-th (a chunk holds up to ~8,000 messages: under ``--callgrind``'s 20,000 rows the
    overshoot would be counted as cost)."""
    for i, msg in enumerate(msgs):
        if msg[0] == 0x77 and msg[25] in b"IUD":
            k -= 1
            if k == 0:
                return msgs[:i + 1]
    return msgs


def _frame_counting(data: bytes, pos: int) -> tuple[list[tuple[int, bool]], int]:
    """Frames the stream like ``decode_chunk`` without decoding: the Insert messages among
    the whole CopyData messages from ``pos``, and whether a keepalive asked for a reply."""
    unpack = struct.Struct("!i").unpack_from
    stop, count, reply = len(data), 0, False
    while pos + 5 <= stop:
        nxt = pos + 1 + unpack(data, pos + 1)[0]
        if nxt > stop or data[pos] != 0x64:
            break
        if data[pos + 5] == 0x77:
            count += data[pos + 30] == 0x49
        elif data[pos + 22]:
            reply = True
        pos = nxt
    return [(count, reply)], pos


async def read_etlsync(n: dict[str, str], rows: int, binary: bool = False
                       ) -> tuple[float, float]:
    """etlsync's client framing the same stream without decoding it (counts the Insert
    messages by their first byte); ``binary``: the server sends values in binary format."""
    conn = await _connect()
    server = await Walsender.find(_app_name(), TRACE)
    seen = 0
    t0, c0 = time.perf_counter(), time.process_time()
    options = {"proto_version": "1", "publication_names": n["pub"]}
    if binary:
        options["binary"] = "true"
    await conn.start_replication(n["slot"], 0, options)
    while seen < rows:
        for count, reply in await conn.read_decoded(_frame_counting):
            seen += count
            if reply:
                conn.send_status(0, False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    SERVER.update(server.result(rows))
    conn.abort()
    return seconds, cpu


def decode_psycopg2(n: dict[str, str], rows: int, dicts: bool = False) -> tuple[float, float]:
    import psycopg2  # type: ignore[import-untyped]
    import psycopg2.extras  # type: ignore[import-untyped]

    from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder

    conn = psycopg2.connect(DSN, application_name=_app_name(),
                            connection_factory=psycopg2.extras.LogicalReplicationConnection)
    server = asyncio.run(Walsender.find(_app_name(), TRACE))
    cur = conn.cursor()
    # Inserts as value tuples, like decode_chunk; ``dicts``: as dicts (the loop before issue 7)
    decode = PgOutputDecoder().decode if dicts else PgOutputDecoder().decode_record
    seen = [0]
    first: list[float] = []

    def consume(msg: Any) -> None:
        if not first:
            first.append(time.perf_counter())
        if decode(msg.payload)[0] in ("I", "U", "D"):
            seen[0] += 1
            if seen[0] >= rows:
                raise psycopg2.extras.StopReplication

    t0, c0 = time.perf_counter(), time.process_time()
    cur.start_replication(slot_name=n["slot"], decode=False,
                          options={"proto_version": "1", "publication_names": n["pub"]})
    with contextlib.suppress(psycopg2.extras.StopReplication):
        cur.consume_stream(consume)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    SERVER.update(server.result(rows))
    _stream_times(t0, first[0], seconds)
    conn.close()
    return seconds, cpu


def decode_psycopg2_sql(n: dict[str, str], rows: int) -> tuple[float, float]:
    """The SQL interface from psycopg2, as its users could call it: the same temporary copy
    and calls of ``SQL_CHANGES`` changes, one row per message, each decoded by
    ``decode_record`` like the psycopg2 loop (sequential: fetch, then decode)."""
    import psycopg2

    from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder

    conn = psycopg2.connect(DSN, application_name=_app_name())
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    server = Walsender(cur.fetchone()[0], TRACE)
    decode = PgOutputDecoder().decode_record
    tmp = f"{n['slot']}_sql_{os.getpid()}"
    seen = 0
    t0, c0 = time.perf_counter(), time.process_time()
    cur.execute("SELECT pg_copy_logical_replication_slot(%s, %s, true)", (n["slot"], tmp))
    while seen < rows:
        cur.execute("SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, %s, "
                    "'proto_version', '1', 'publication_names', %s)",
                    (tmp, SQL_CHANGES, n["pub"]))
        result = cur.fetchall()
        if not result:
            raise RuntimeError(f"the backlog ended after {seen} of {rows} changes")
        for (data,) in result:
            if decode(bytes(data))[0] in ("I", "U", "D"):
                seen += 1
                if seen >= rows:
                    break
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    SERVER.update(server.result(rows))
    conn.close()
    return seconds, cpu


def _sink_class() -> Any:
    from etlsync.connectors.postgres import PostgresSink

    class MeasuringSink(PostgresSink):
        """Counts rows and (with ``lags``) records the lag of each row after its batch is
        durable (the throughput runs only count: reading rows back is not the sink's work)."""

        def __init__(self, *a: Any, stop_at: int = 0, on_done: Any = None, lags: bool = True,
                     **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.count, self.stop_at, self.on_done = 0, stop_at, on_done
            self.record_lags = lags
            self.lags: list[float] = []

        async def write(self, batch: Any) -> None:
            await super().write(batch)
            now = time.time()
            self.count += len(batch)
            if self.record_lags:
                for row in batch.rows:
                    created = row.get("ts")
                    if created is not None:
                        self.lags.append(now - created.timestamp())
            if self.stop_at and self.count >= self.stop_at and self.on_done is not None:
                self.on_done()

    return MeasuringSink


def _source(n: dict[str, str], ack: bool, **kw: Any) -> Any:
    from etlsync.connectors.postgres.cdc import PostgresCdcSource

    class BenchSource(PostgresCdcSource):
        async def on_commit(self, position: Any) -> None:
            if ack:  # the throughput runs never ack, so every round reads the same WAL
                await super().on_commit(position)

    return BenchSource(DSN, slot=n["slot"], publication=n["pub"], tables=[n["table"]],
                       snapshot="never", status_interval=1.0, **kw)


async def e2e_etlsync(n: dict[str, str], rows: int) -> tuple[float, float]:
    """Seconds and client CPU seconds to apply ``rows`` CDC inserts to the target table;
    checks afterwards that the target holds exactly the source table's rows and values."""
    import asyncpg

    from etlsync.core.pipeline import Pipeline

    conn = await asyncpg.connect(DSN)
    await conn.execute(f'TRUNCATE "{n["target"]}"')
    sink = _sink_class()(DSN, table=n["target"], write_mode="upsert", exactly_once=False,
                         stop_at=rows, lags=False)
    pipe = Pipeline(_source(n, ack=False), sinks=[sink], name=n["slot"])
    sink.on_done = pipe.stop
    t0, c0 = time.perf_counter(), time.process_time()
    await pipe.run(handle_signals=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    got = await conn.fetchval(f'SELECT count(*) FROM "{n["target"]}"')
    differ = await conn.fetchval(
        f'SELECT count(*) FROM "{n["table"]}" s FULL JOIN "{n["target"]}" t USING (id) '
        "WHERE (s.v, s.n, s.ts, s.f) IS DISTINCT FROM (t.v, t.n, t.ts, t.f)")
    await conn.close()
    assert got == rows, (got, rows)
    assert differ == 0, f"{differ} rows differ from the source table"
    return seconds, cpu


class _NullSink:
    """A sink that only records each row's lag (the CDC reader's own share of the lag)."""

    name = "null"

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def open(self, context: Any) -> None:
        pass

    async def write(self, batch: Any) -> None:
        now = time.time()
        self.lags.extend(now - r["ts"].timestamp() for r in batch.rows if r.get("ts"))

    async def close(self) -> None:
        pass

    async def describe(self) -> None:
        return None


async def lag_etlsync(run: str, seconds: float, null_sink: bool = False) -> dict[str, Any]:
    import asyncpg

    from etlsync.connectors.postgres import PostgresCheckpointStore
    from etlsync.core.pipeline import Pipeline
    from etlsync.core.stages import Sink

    n = names(run, "lag_null" if null_sink else "lag")
    conn = await asyncpg.connect(DSN)
    await conn.execute(f'CREATE TABLE "{n["table"]}" ({COLUMNS})')
    if null_sink:
        Sink.register(_NullSink)
        sink: Any = _NullSink()
    else:
        sink = _sink_class()(DSN, table=n["target"], write_mode="upsert")
    store = PostgresCheckpointStore(DSN)
    pipe = Pipeline(_source(n, ack=True, heartbeat_interval=5.0), sinks=[sink],
                    name=n["slot"], checkpoint_store=store)
    task = asyncio.ensure_future(pipe.run(handle_signals=False))
    while not await conn.fetchval("SELECT count(*) FROM pg_replication_slots WHERE "
                                  "slot_name = $1 AND active", n["slot"]):
        await asyncio.sleep(0.1)
    producer = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--variant", "producer:" + n["table"], "--run", run,
        "--rows", str(int(seconds * LAG_RATE)))
    await producer.wait()
    await asyncio.sleep(2.0)
    pipe.stop()
    await task
    await store.close()
    await conn.close()
    lags = sorted(sink.lags)
    q = statistics.quantiles(lags, n=100)
    return {"changes": len(lags), "lag_p50_ms": round(q[49] * 1000, 1),
            "lag_p99_ms": round(q[98] * 1000, 1), "lag_max_ms": round(lags[-1] * 1000, 1)}


async def producer(table: str, rows: int) -> None:
    """Insert ``rows`` rows at LAG_RATE rows/s in transactions of 50 (``ts`` = insert time)."""
    import asyncpg

    conn = await asyncpg.connect(DSN)
    per_tx, t0, i = 50, time.perf_counter(), 0
    sql = (f'INSERT INTO "{table}" SELECT g, \'lag\', g, clock_timestamp(), '
           "random() FROM generate_series($1::int, $2::int) g")
    while i < rows:
        await conn.execute(sql, i + 1, i + per_tx)
        i += per_tx
        ahead = t0 + i / LAG_RATE - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
    await conn.close()


def child(variant: str, run: str, rows: int) -> None:
    kind, _, shape = variant.partition(":")
    if kind == "producer":
        asyncio.run(producer(shape, rows))
        return
    if kind.startswith("lag_etlsync"):
        seconds = max(5.0, rows / 20_000)
        extra = asyncio.run(lag_etlsync(run, seconds, null_sink=kind.endswith("null_sink")))
        child_result(variant, extra["changes"], seconds, rate_per_s=LAG_RATE, **extra,
                     ratio_p99_vs_target=round(extra["lag_p99_ms"] / LAG_P99_TARGET_MS, 3))
        return
    n = names(run, shape)
    if kind.startswith(("decode_", "read_")):
        if kind.startswith("decode_etlsync_sql"):
            seconds, cpu = asyncio.run(decode_etlsync_sql(n, rows, kind.endswith("rows")))
        elif kind.startswith("decode_etlsync"):
            mode = kind.removeprefix("decode_etlsync").lstrip("_")
            seconds, cpu = asyncio.run(decode_etlsync(n, rows, mode))
        elif kind.startswith("read_etlsync"):
            seconds, cpu = asyncio.run(read_etlsync(n, rows, binary=kind.endswith("binary")))
        elif kind == "decode_psycopg2_sql":
            seconds, cpu = decode_psycopg2_sql(n, rows)
        else:
            seconds, cpu = decode_psycopg2(n, rows, dicts=kind.endswith("dicts"))
        # wall time includes the server's decoding (walsender), the same for both clients;
        # client CPU seconds measure the client's own cost per event
        child_result(variant, rows, seconds, client_cpu_s=round(cpu, 4),
                     events_per_client_cpu_s=round(rows / cpu) if cpu > 0 else None, **SERVER)
        return
    seconds, cpu = asyncio.run(e2e_etlsync(n, rows))
    child_result(variant, rows, seconds, client_cpu_s=round(cpu, 3),
                 events_per_client_cpu_s=round(rows / cpu) if cpu > 0 else None)


def _extra_args(parser: Any) -> None:
    parser.add_argument("--run", default=None, help="(internal)")
    parser.add_argument("--only", default=None,
                        help="comma-separated kinds to run, e.g. decode_etlsync,decode_psycopg2 "
                             "(default: all; 'lag' selects the lag runs)")
    parser.add_argument("--server-trace", action="store_true",
                        help="count the walsender's system calls and packets with perf stat")
    parser.add_argument("--check", action="store_true",
                        help="digest the changes decode_etlsync and decode_etlsync_sql decode "
                             "and compare them (slower: not for timing)")


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], 200_000, _extra_args, services=True)
    if args.variant:
        child(args.variant, args.run, args.rows)
        return
    run = f"{random.getrandbits(24):06x}"
    rows = args.rows - args.rows % 100
    asyncio.run(setup(run, rows))
    try:
        kinds = ("decode_etlsync", "decode_psycopg2", "decode_psycopg2_dicts", "read_etlsync",
                 "e2e_etlsync", "lag")
        experiments = ("decode_etlsync_rcvbuf", "decode_etlsync_pause", "read_etlsync_binary",
                       "decode_etlsync_sql", "decode_etlsync_sql_rows", "decode_psycopg2_sql")
        only = set(args.only.split(",")) if args.only else set(kinds)
        variants = [f"{k}:{s}" for s in SHAPES for k in (*kinds[:-1], *experiments) if k in only]
        results = run_variants(__file__, variants, rows, repeat=args.repeat,
                               extra_args=["--run", run]
                               + (["--server-trace"] if args.server_trace else [])
                               + (["--check"] if args.check else []))
        if "lag" in only:
            results.update(run_variants(__file__, ["lag_etlsync", "lag_etlsync_null_sink"],
                                        rows, repeat=1, extra_args=["--run", run]))
        # client instructions per variant: immune to machine load
        if args.callgrind and {"decode_etlsync", "decode_psycopg2"} <= only:
            cg_rows = min(rows, 20_000)
            for s in SHAPES:
                counted = [f"{k}:{s}" for k in ("decode_etlsync", "decode_psycopg2",
                                                "decode_psycopg2_dicts") if k in only]
                counts = count_instructions(__file__, counted, cg_rows,
                                            extra_args=["--run", run])
                counts = {k: v * rows // cg_rows for k, v in counts.items()}
                add_instruction_ratios(results, counts, f"decode_etlsync:{s}",
                                       {f"decode_psycopg2:{s}": "ratio_vs_psycopg2",
                                        f"decode_psycopg2_dicts:{s}": "ratio_vs_psycopg2_dicts"})
    finally:
        asyncio.run(teardown(run))
    for s in SHAPES:
        etl, psy = results.get(f"decode_etlsync:{s}"), results.get(f"decode_psycopg2:{s}")
        for other in (etl, results.get(f"read_etlsync:{s}"),
                      results.get(f"decode_psycopg2_dicts:{s}"),
                      *(results.get(f"{k}:{s}") for k in experiments)):
            if other and psy and "error" not in other and "error" not in psy:
                other["ratio_vs_psycopg2"] = round(other["rows_per_s"] / psy["rows_per_s"], 3)
                if other.get("events_per_client_cpu_s"):
                    other["ratio_cpu_vs_psycopg2"] = round(
                        other["events_per_client_cpu_s"] / psy["events_per_client_cpu_s"], 3)
        if etl and psy and "error" not in etl and "error" not in psy:
            etl["ratio_vs_psycopg2"] = round(etl["rows_per_s"] / psy["rows_per_s"], 3)
            etl["ratio_cpu_vs_psycopg2"] = round(
                etl["events_per_client_cpu_s"] / psy["events_per_client_cpu_s"], 3)
            psy["ratio_vs_psycopg2"] = psy["ratio_cpu_vs_psycopg2"] = 1.0
            if etl.get("stream_s") and psy.get("stream_s"):
                etl["ratio_stream_vs_psycopg2"] = round(psy["stream_s"] / etl["stream_s"], 3)
                psy["ratio_stream_vs_psycopg2"] = 1.0
        for sql in (results.get(f"decode_etlsync_sql:{s}"),
                    results.get(f"decode_etlsync_sql_rows:{s}")):
            if sql and etl and "records_digest" in sql and "records_digest" in etl:
                sql["same_changes_as_decode_etlsync"] = (sql["records_digest"]
                                                         == etl["records_digest"])
        e2e = results.get(f"e2e_etlsync:{s}")
        if e2e and "error" not in e2e:
            e2e["ratio_vs_target"] = round(e2e["rows_per_s"] / E2E_TARGET, 3)
    report(results, args.json)
    if not args.json:
        print(json.dumps({"machine_load_1m": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
