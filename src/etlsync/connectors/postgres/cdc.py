"""``PostgresCdcSource``: change data capture from PostgreSQL logical replication (pgoutput).

An initial snapshot consistent with the slot (exported snapshot, copied in primary-key chunks),
then the slot's change stream, with no gap and no duplicate. Positions are dicts:
``{"lsn": int}`` while streaming (the commit end LSN of the last whole transaction),
``{"lsn": int, "snapshot": {...}}`` during the initial snapshot and
``{"lsn": int, "resnap": {...}}`` while a table is re-snapshotted beside the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from etlsync.connectors.postgres.connection import PgConnectionConfig
from etlsync.connectors.postgres.replication.conninfo import params_from_config
from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder, Relation
from etlsync.connectors.postgres.replication.protocol import (
    PgServerError,
    ReplicationConnection,
    format_lsn,
    quote_ident,
)
from etlsync.connectors.postgres.replication.slots import (
    check_ready,
    create_slot,
    ensure_publication,
    primary_key,
    slot_info,
    split_table,
    type_catalog,
)
from etlsync.connectors.postgres.replication.snapshot import (
    TableReader,
    current_values,
    prepare_connection,
)
from etlsync.connectors.postgres.replication.types import BUILTIN, Catalog
from etlsync.connectors.postgres.types import UNCHANGED
from etlsync.core.batch import Batch, Op, Row, dict_maker
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError, ServiceNotReady
from etlsync.core.schema import Schema
from etlsync.core.stages import Source
from etlsync.log import get_logger

WATERMARK_PREFIX = "etlsync_wm"
HEARTBEAT_PREFIX = "etlsync_heartbeat"


def _norm(table: str) -> str:
    schema, name = split_table(table)
    return f"{schema}.{name}"


class _Chunk:
    """A re-snapshot chunk between its low and high watermarks (DBLog)."""

    def __init__(self, wid: str, reader: TableReader, rows: list[Row]) -> None:
        self.wid = wid
        self.reader = reader
        self.rows = rows
        self.window: set[tuple[Any, ...]] | None = None
        self.last_key = reader.last_key(rows) if rows else None


class PostgresCdcSource(Source):
    """Reads the changes of published tables through a logical replication slot.

    :param connection: a ``postgresql://`` DSN or a :class:`PgConnectionConfig` (TLS options,
        password from env or file). The user needs the ``REPLICATION`` attribute, a
        ``replication`` line in ``pg_hba.conf`` and ``SELECT`` on the tables.
    :param slot: replication slot name (created when absent and ``create_slot``).
    :param publication: publication name (created when absent and ``create_publication``).
    :param tables: ``schema.table`` names; ``None`` means every table of the publication
        (``FOR ALL TABLES`` when it is created).
    :param snapshot: ``"initial"`` copies the tables first, consistent with the slot;
        ``"never"`` streams changes only.
    :param heartbeat_interval: seconds between heartbeat messages written to the WAL, so an
        idle slot keeps advancing; ``None`` disables them.
    :param status_interval: seconds between standby status updates (and idle positions).
    :param batch_rows: most rows in one batch; :param snapshot_chunk_rows: rows per chunk.
    :param streaming: use protocol v2 where the server has it (PostgreSQL 14+): the server
        streams a large transaction while it runs instead of spilling it to disk until the
        commit; etlsync buffers it in memory and emits it at the commit (dropped on abort).
    :param replication_settings: extra settings for the walsender session, e.g.
        ``{"logical_decoding_work_mem": "64MB"}`` (the size above which it streams).
    """

    capabilities = frozenset({Capability.CDC})

    def __init__(self, connection: PgConnectionConfig | str, *, slot: str, publication: str,
                 tables: list[str] | None = None, create_slot: bool = True,
                 create_publication: bool = True, snapshot: str = "initial",
                 heartbeat_interval: float | None = None, status_interval: float = 10.0,
                 batch_rows: int = 5000, snapshot_chunk_rows: int = 10_000,
                 streaming: bool = True, replication_settings: dict[str, str] | None = None,
                 name: str = "postgres_cdc") -> None:
        if snapshot not in ("initial", "never"):
            raise ConfigError(f"snapshot must be 'initial' or 'never', not {snapshot!r}")
        self.config = PgConnectionConfig.coerce(connection)
        self.slot = slot
        self.publication = publication
        self.tables = [_norm(t) for t in tables] if tables else None
        self.create_slot = create_slot
        self.create_publication = create_publication
        self.snapshot = snapshot
        self.heartbeat_interval = heartbeat_interval
        self.status_interval = status_interval
        self.batch_rows = batch_rows
        self.chunk_rows = snapshot_chunk_rows
        self.streaming = streaming
        self.replication_settings = dict(replication_settings or {})
        self.streamed_transactions = 0
        """Transactions the server streamed before their commit (protocol v2)."""
        self.name = name
        self.log = get_logger(source=name, slot=slot)
        self.acked_lsn = 0
        self._rconn: ReplicationConnection | None = None
        self._resnap: dict[str, Any] | None = None
        self._resnap_queue: list[str] = []
        self._lock = asyncio.Lock()

    # -- public API ----------------------------------------------------------------------
    def request_snapshot(self, table: str) -> None:
        """Re-snapshot ``table`` while streaming continues (chunked, resumable, DBLog
        watermarks); rows changed during a chunk's window are taken from the stream."""
        self._resnap_queue.append(_norm(table))

    @property
    def resnapshot_active(self) -> bool:
        """Whether a requested re-snapshot is pending or in progress."""
        return self._resnap is not None or bool(self._resnap_queue)

    async def discover(self) -> dict[str, Schema]:
        conn = await self.config.connect()
        try:
            tables = self.tables or []
            if not tables:
                rows = await conn.fetch("SELECT schemaname, tablename FROM pg_publication_tables "
                                        "WHERE pubname = $1", self.publication)
                tables = [f"{r[0]}.{r[1]}" for r in rows]
            out: dict[str, Schema] = {}
            catalog: Catalog = {}
            for t in tables:
                out[t] = (await TableReader(t, self.publication).prepare(conn, catalog)).schema
            return out
        finally:
            await conn.close()

    async def on_commit(self, position: Any) -> None:
        """Confirm the committed LSN to the slot (standby status update: flush = apply)."""
        if not isinstance(position, dict) or "snapshot" in position:
            return
        lsn = int(position["lsn"])
        if lsn > self.acked_lsn:
            self.acked_lsn = lsn
            if self._rconn is not None:
                with contextlib.suppress(ConnectionError, OSError):
                    self._rconn.send_status(lsn)

    # -- read ----------------------------------------------------------------------------
    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        conn = await self.config.connect()
        rconn: ReplicationConnection | None = None
        heartbeat: asyncio.Task[None] | None = None
        try:
            await prepare_connection(conn)
            await check_ready(conn)
            info = await slot_info(conn, self.slot)
            if info is not None and (info.plugin != "pgoutput"
                                     or info.database != self.config.identity()[2]):
                raise ConfigError(f"slot {self.slot!r} uses plugin {info.plugin!r} on database "
                                  f"{info.database!r}; etlsync needs a pgoutput slot here")
            if position is not None and info is None:
                raise ServiceNotReady(
                    f"replication slot {self.slot!r} is missing (dropped, or lost in a "
                    "failover) but the checkpoint expects it: changes since the checkpoint "
                    "cannot be read. Fix: delete this pipeline's checkpoint to take a new "
                    "snapshot with a new slot")
            tables = await ensure_publication(
                conn, self.publication, self.tables, self.create_publication,
                slot=self.slot if info is not None else None, log=self.log)
            if self.tables:
                tables = [t for t in tables if t in self.tables]
            if position is None:
                if info is None:
                    if not self.create_slot:
                        raise ConfigError(f"replication slot {self.slot!r} does not exist and "
                                          "create_slot is False")
                    rconn = await self._connect()
                    export = self.snapshot == "initial"
                    lsn, snap = await create_slot(rconn, self.slot, export)
                    self.log.info("slot created", lsn=format_lsn(lsn))
                else:
                    lsn, snap = info.confirmed_flush_lsn or 0, None
                if self.snapshot == "initial":
                    async for b in self._snapshot(conn, tables, lsn, None, snap):
                        yield b
            else:
                assert info is not None
                lsn = int(position["lsn"])
                if (info.confirmed_flush_lsn or 0) > lsn:
                    self.log.warning(
                        "the slot was confirmed past the checkpoint: the server resumes at the "
                        "slot, changes in between are not read again",
                        checkpoint=format_lsn(lsn), slot=format_lsn(info.confirmed_flush_lsn or 0))
                if "snapshot" in position:
                    async for b in self._snapshot(conn, tables, lsn, position["snapshot"], None):
                        yield b
                self._resnap = position.get("resnap")
            if rconn is None:
                rconn = await self._connect()
            if self.heartbeat_interval:
                heartbeat = asyncio.create_task(self._heartbeat(conn))
            async for b in self._stream(conn, rconn, lsn):
                yield b
        finally:
            self._rconn = None
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await heartbeat
            if rconn is not None:
                await rconn.close()
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    async def _connect(self) -> ReplicationConnection:
        return await ReplicationConnection(params_from_config(self.config),
                                           self.replication_settings).connect()

    async def _heartbeat(self, conn: asyncpg.Connection) -> None:
        assert self.heartbeat_interval is not None
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                async with self._lock:
                    await conn.execute("SELECT pg_logical_emit_message(false, $1, '')",
                                       HEARTBEAT_PREFIX)
            except (asyncpg.PostgresError, OSError) as exc:
                self.log.warning("heartbeat failed", error=str(exc))

    # -- snapshot ------------------------------------------------------------------------
    async def _snapshot(self, conn: asyncpg.Connection, tables: list[str], lsn: int,
                        state: dict[str, Any] | None, exported: str | None
                        ) -> AsyncIterator[Batch]:
        """Copy ``tables`` in key order; inside the exported snapshot when there is one, else
        (a resumed snapshot) with plain reads: the stream from ``lsn`` replays every change
        since, so upserts converge on the source's state."""
        tx = None
        if exported is not None:
            tx = conn.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{exported}'")
        todo = sorted(tables)
        after: list[Any] | None = None
        if state is not None:
            todo = [t for t in todo if t >= state["table"]]
            after = state.get("after") if todo and todo[0] == state["table"] else None
        catalog: Catalog = {}
        try:
            for table in todo:
                reader = TableReader(table, self.publication)
                rel = await reader.prepare(conn, catalog)
                while True:
                    rows = await reader.chunk(conn, after, self.chunk_rows)
                    if not rows:
                        break
                    after = reader.last_key(rows)
                    yield Batch(rows, stream=rel.stream, schema=rel.schema, position={
                        "lsn": lsn, "snapshot": {"table": table, "after": after}})
                    if len(rows) < self.chunk_rows:
                        break
                after = None
            if tx is not None:
                await tx.commit()
                tx = None
        finally:
            if tx is not None:
                with contextlib.suppress(Exception):
                    await tx.rollback()
        yield Batch([], position={"lsn": lsn})

    # -- stream --------------------------------------------------------------------------
    def _position(self, lsn: int) -> dict[str, Any]:
        if self._resnap is None:
            return {"lsn": lsn}
        return {"lsn": lsn, "resnap": dict(self._resnap)}

    async def _resolve(self, conn: asyncpg.Connection, decoder: PgOutputDecoder,
                       rel: Relation) -> None:
        async with self._lock:
            unknown = [o for o in rel.type_oids() if o not in BUILTIN and o not in decoder.catalog]
            if unknown:
                decoder.catalog.update(await type_catalog(conn, unknown))
            pk = None
            if rel.replica_identity in ("f", "n") or not rel.key:
                pk = await primary_key(conn, rel.oid)
        rel.build(decoder.catalog, pk)

    async def _stream(self, conn: asyncpg.Connection, rconn: ReplicationConnection,
                      start_lsn: int) -> AsyncIterator[Batch]:
        options = {"proto_version": "1", "publication_names": quote_ident(self.publication),
                   "messages": "true"}
        version = rconn.server_params.get("server_version", "0").split(".")[0]
        if self.streaming and version.isdigit() and int(version) >= 14:
            options.update(proto_version="2", streaming="on")
        for attempt in range(50):
            try:
                await rconn.start_replication(self.slot, start_lsn, options)
                break
            except PgServerError as exc:
                # 55006: the slot is still held by a connection that died (e.g. kill -9)
                if exc.code != "55006" or attempt == 49:
                    raise
                await asyncio.sleep(0.2)
        self._rconn = rconn
        self.acked_lsn = max(self.acked_lsn, start_lsn)
        self.log.info("streaming", start=format_lsn(start_lsn))
        decoder = PgOutputDecoder()
        out: list[Batch] = []
        cur_rel: Relation | None = None
        rows: list[Any] = []
        """Pending rows of ``cur_rel``: value tuples while ``as_records`` (inserts only, a
        record-form batch), else dicts."""
        as_records = False
        ops: list[Op] = []
        before: list[Row | None] = []
        committed = False
        in_tx = skip_tx = False
        last_commit = emitted = idle = start_lsn
        last_status = last_yield = time.monotonic()
        chunk: _Chunk | None = None
        ins, upd, dele = Op.INSERT, Op.UPDATE, Op.DELETE

        def flush(position: Any = None) -> None:
            nonlocal rows, ops, before, committed, emitted, as_records
            if rows:
                if committed:
                    position = self._position(last_commit)
                    emitted = last_commit
                assert cur_rel is not None
                if as_records:
                    out.append(Batch.from_records(
                        cur_rel.names, rows, stream=cur_rel.stream, position=position,
                        ops=ops, before=before, schema=cur_rel.schema))
                else:
                    out.append(Batch(rows, stream=cur_rel.stream, position=position, ops=ops,
                                     before=before, schema=cur_rel.schema))
                rows, ops, before, committed, as_records = [], [], [], False, False

        def as_dicts(rel: Relation) -> None:
            """A change in dict form joins pending records: the batch turns to dicts."""
            nonlocal rows, as_records
            if as_records:
                rows = list(map(dict_maker(rel.names), rows))
                as_records = False

        def watch(rel: Relation, row: Row | None) -> None:
            if (chunk is not None and chunk.window is not None and row is not None
                    and rel.stream == chunk.reader.table):
                chunk.window.add(tuple(row.get(k) for k in chunk.reader.key))

        def watch_records(rel: Relation, records: list[tuple[Any, ...]]) -> None:
            if (chunk is not None and chunk.window is not None
                    and rel.stream == chunk.reader.table):
                at = [rel.names.index(k) if k in rel.names else -1 for k in chunk.reader.key]
                chunk.window.update(tuple(r[i] if i >= 0 else None for i in at)
                                    for r in records)

        batch_rows = self.batch_rows
        decode_chunk = decoder.decode_chunk
        streamed: dict[int, list[tuple[int, tuple[Any, ...]]]] = {}
        stream_xid = 0

        while True:
            try:
                events = await asyncio.wait_for(rconn.read_decoded(decode_chunk),
                                                self.status_interval)
            except TimeoutError:
                events = []
            for ev in events:
                kind = ev[0]
                if kind == "I*":  # a run of inserts of one relation, as value tuples
                    if skip_tx:
                        continue
                    rel, records = ev[1], ev[2]
                    if rel is not cur_rel:
                        flush()
                        cur_rel = rel
                    if not rows:
                        as_records = True
                    if chunk is not None:
                        watch_records(rel, records)
                    taken = 0
                    while taken < len(records):
                        part = records[taken:taken + batch_rows - len(rows)]
                        taken += len(part)
                        rows += part if as_records else map(dict_maker(rel.names), part)
                        ops += [ins] * len(part)
                        before += [None] * len(part)
                        committed = False
                        if len(rows) >= batch_rows:
                            flush()
                            as_records = True
                    continue
                if kind == "k":  # keepalive
                    if ev[2]:
                        rconn.send_status(self.acked_lsn)
                        last_status = time.monotonic()
                    if not in_tx:
                        idle = max(idle, ev[1])
                    continue
                if kind == "X":  # a change inside a v2 stream block: held until its commit
                    streamed[stream_xid].append((ev[1], ev[2]))
                    continue
                if kind in ("S", "E", "A", "c"):
                    if kind == "S":
                        stream_xid = ev[1]
                        if stream_xid not in streamed:
                            streamed[stream_xid] = []
                            self.streamed_transactions += 1
                        continue
                    if kind == "A":  # a subtransaction's or the whole transaction's abort
                        xid, sub = ev[1], ev[2]
                        if xid == sub:
                            streamed.pop(xid, None)
                        elif xid in streamed:
                            streamed[xid] = [c for c in streamed[xid] if c[0] != sub]
                        continue
                    if kind == "E":
                        continue
                    changes = streamed.pop(ev[1], [])
                    replay = [("B", ev[2], ev[1]), *(c[1] for c in changes),
                              ("C", ev[2], ev[3])]
                else:
                    replay = [ev]
                for ev in replay:
                    kind = ev[0]
                    if kind in ("I", "U", "D"):
                        if skip_tx:
                            continue
                        rel = ev[1]
                        if rel is not cur_rel:
                            flush()
                            cur_rel = rel
                        as_dicts(rel)
                        if kind == "I":
                            rows.append(ev[2])
                            ops.append(ins)
                            before.append(None)
                            if chunk is not None:
                                watch(rel, ev[2])
                        elif kind == "U":
                            row, old = ev[2], ev[3]
                            key = rel.primary_key
                            if old is not None and any(k in old and old[k] != row[k] for k in key):
                                if UNCHANGED in row.values():
                                    row = await self._fill_unchanged(conn, rel, row, old)
                                old = {k: old[k] for k in key if k in old}
                                rows += (old, row)
                                ops += (dele, ins)
                                before += (old, None)
                                watch(rel, old)
                            else:
                                rows.append(row)
                                ops.append(upd)
                                before.append(old if old is not None else
                                              {k: row[k] for k in key if k in row})
                            watch(rel, row)
                        else:
                            rows.append(ev[2])
                            ops.append(dele)
                            before.append(ev[2])
                            watch(rel, ev[2])
                        committed = False
                        if len(rows) >= batch_rows:
                            flush()
                    elif kind == "B":
                        in_tx = True
                        skip_tx = ev[1] < start_lsn
                    elif kind == "C":
                        in_tx = False
                        if not skip_tx:
                            last_commit = ev[2]
                            idle = max(idle, ev[2])
                            committed = bool(rows)
                            if not rows and out and out[-1].position is None:
                                # a truncate or re-snapshot chunk ended the transaction
                                out[-1].position = self._position(ev[2])
                                emitted = ev[2]
                        skip_tx = False
                    elif kind == "R":
                        flush()
                        cur_rel = None
                        await self._resolve(conn, decoder, ev[1])
                    elif kind == "T":
                        flush()
                        if not skip_tx:
                            for rel in ev[1]:
                                out.append(Batch([{}], stream=rel.stream, ops=[Op.TRUNCATE],
                                                 before=[None], schema=rel.schema))
                    elif kind == "M" and not ev[1] and not in_tx:
                        # a non-transactional message (heartbeat): every transaction that
                        # committed before it was sent, so its LSN is a safe resume point
                        idle = max(idle, ev[4])
                    elif kind == "M" and ev[2] == WATERMARK_PREFIX and chunk is not None:
                        mark = ev[3].decode()
                        if mark == "L:" + chunk.wid:
                            chunk.window = set()
                        elif mark == "H:" + chunk.wid:
                            flush()
                            self._finish_chunk(chunk, out)
                            chunk = None
            if not in_tx:
                flush()
                if (idle > emitted and not rows and not out
                        and time.monotonic() - last_yield >= self.status_interval):
                    # nothing pending: let the slot advance (WAL of other tables, heartbeats)
                    out.append(Batch([], position=self._position(idle)))
                    emitted = idle
                if chunk is None and (self._resnap is not None or self._resnap_queue):
                    chunk = await self._start_chunk(conn)
            elif len(rows) >= self.batch_rows:
                flush()
            if out:
                batches, out = out, []
                last_yield = time.monotonic()
                for b in batches:
                    yield b
            if time.monotonic() - last_status >= self.status_interval:
                rconn.send_status(self.acked_lsn)
                await rconn.flush()
                last_status = time.monotonic()

    async def _fill_unchanged(self, conn: asyncpg.Connection, rel: Relation, row: Row,
                              old: Row) -> Row:
        """A key change is a delete and an insert, but the server leaves unchanged TOASTed
        values out of the new row. Take them from the old row (REPLICA IDENTITY FULL), else
        read them from the source now: a later change of that value is in the stream after
        this one, so the target converges on the source either way."""
        row = dict(row)
        for col, value in row.items():
            if value is UNCHANGED and old.get(col, UNCHANGED) is not UNCHANGED:
                row[col] = old[col]
        missing = [c for c, v in row.items() if v is UNCHANGED]
        if not missing or not rel.primary_key:
            return row
        async with self._lock:
            found = await current_values(conn, rel, [row[k] for k in rel.primary_key], missing)
        if found is not None:
            row.update(found)
        return row

    # -- re-snapshot (DBLog watermarks) -------------------------------------------------
    async def _start_chunk(self, conn: asyncpg.Connection) -> _Chunk | None:
        if self._resnap is None:
            table = self._resnap_queue.pop(0)
            self._resnap = {"table": table, "after": None}
            self.log.info("re-snapshot started", table=table)
        reader = TableReader(self._resnap["table"], self.publication)
        wid = uuid.uuid4().hex
        async with self._lock:
            await reader.prepare(conn, {})
            await conn.execute("SELECT pg_logical_emit_message(true, $1, $2)",
                               WATERMARK_PREFIX, "L:" + wid)
            rows = await reader.chunk(conn, self._resnap.get("after"), self.chunk_rows)
            await conn.execute("SELECT pg_logical_emit_message(true, $1, $2)",
                               WATERMARK_PREFIX, "H:" + wid)
        return _Chunk(wid, reader, rows)

    def _finish_chunk(self, chunk: _Chunk, out: list[Batch]) -> None:
        """At the high watermark: emit the chunk's rows minus keys changed in the window."""
        assert self._resnap is not None
        window = chunk.window or set()
        key = chunk.reader.key
        rows = [r for r in chunk.rows if tuple(r[k] for k in key) not in window]
        rel = chunk.reader.relation
        assert rel is not None
        if rows:
            out.append(Batch(rows, stream=rel.stream, schema=rel.schema))
        if chunk.last_key is not None and len(chunk.rows) >= self.chunk_rows:
            self._resnap = {"table": self._resnap["table"], "after": chunk.last_key}
        else:
            self.log.info("re-snapshot finished", table=self._resnap["table"])
            self._resnap = None
