"""A decoder of the ``pgoutput`` logical replication protocol (version 1), with a relation cache.

:meth:`PgOutputDecoder.decode` turns one XLogData payload into an event tuple:

- ``("B", final_lsn, xid)`` begin; ``("C", commit_lsn, end_lsn)`` commit
- ``("R", relation)`` a relation (re)described: after DDL the server re-sends it
- ``("I", relation, row)``; ``("U", relation, row, old)``; ``("D", relation, old)``
- ``("T", [relations])`` truncate; ``("M", transactional, prefix, content, lsn)`` logical message
- ``("Y", oid, name)`` a type; ``("O",)`` origin
- protocol v2 streaming of in-progress transactions: ``("S", xid)`` stream start,
  ``("E",)`` stream stop, ``("c", xid, commit_lsn, end_lsn)`` stream commit,
  ``("A", xid, subxid)`` stream abort; changes inside a stream block set ``change_xid``

``row`` and ``old`` are dicts; an unchanged TOASTed value is :data:`UNCHANGED`. ``old`` is the
old key (REPLICA IDENTITY DEFAULT / USING INDEX, key columns only) or the whole old row
(FULL), or ``None`` when the server sent no old tuple. When the old tuple is the whole row,
its values stand in for the new row's unchanged ones (the server sends the old values in
full, the new ones not).

:meth:`PgOutputDecoder.decode_chunk` decodes a chunk of the replication stream itself (the
CopyData messages as the server sent them, from :meth:`ReplicationConnection.read_decoded`) in
one call: a run of consecutive Insert messages of one relation becomes one
``("I*", relation, records)`` event, ``records`` a list of value tuples in the relation's column
order, read by a loop compiled for that relation (no call, dispatch, dict or framing pass per
message); see the method for the other events.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from etlsync.connectors.postgres.replication.protocol import warm_up
from etlsync.connectors.postgres.replication.rowreader import compile_readers
from etlsync.connectors.postgres.replication.types import Catalog, Decoder, type_info
from etlsync.connectors.postgres.types import UNCHANGED
from etlsync.core.errors import DataError
from etlsync.core.schema import Column, Schema

_H = struct.Struct("!h").unpack_from
_I = struct.Struct("!i").unpack_from
_UI = struct.Struct("!I").unpack_from
_Q = struct.Struct("!Q").unpack_from
_BEGIN = struct.Struct("!QqI").unpack_from
_COMMIT = struct.Struct("!BQQq").unpack_from
_KEEPALIVE = struct.Struct("!QqB").unpack_from
_XID_PREFIXED = frozenset(b"IUDTRYM")
"""Messages that carry their transaction id inside a v2 stream block."""
_STREAMED = frozenset(b"IUDTM")
"""Changes a v2 stream block buffers until its stream commit."""


@dataclass(slots=True)
class Relation:
    """A table as the Relation message described it, with its decoders and core schema."""

    oid: int
    namespace: str
    name: str
    replica_identity: str
    columns: list[tuple[int, str, int, int]]
    """``(flags, name, type oid, typmod)``; flag 1 marks a replica identity column."""
    names: tuple[str, ...] = ()
    decoders: list[Decoder] = field(default_factory=list)
    key: tuple[str, ...] = ()
    """The replica identity columns (all columns under REPLICA IDENTITY FULL)."""
    primary_key: tuple[str, ...] = ()
    schema: Schema = field(default_factory=lambda: Schema(()))
    fast_tuple: Any = None
    """``(data, pos) -> (row dict, pos)``: a TupleData reader compiled for this relation's
    columns (see :func:`~etlsync.connectors.postgres.replication.rowreader.compile_readers`)."""
    fast_record: Any = None
    """``(data, pos) -> (value tuple, pos)``: the same reader producing a record."""
    fast_run: Any = None
    """``(stream, pos, stop, append) -> pos``: appends the record of each Insert of this
    relation among the protocol messages in ``stream[pos:stop]`` up to the first other (or
    partial) message, and returns its position; outside stream blocks only (see
    :meth:`PgOutputDecoder.decode_chunk`)."""

    @property
    def stream(self) -> str:
        """``schema.table``."""
        return f"{self.namespace}.{self.name}"

    def build(self, catalog: Catalog, primary_key: tuple[str, ...] | None = None) -> None:
        """Prepare decoders and the core schema. ``catalog`` describes non-builtin types;
        ``primary_key`` overrides the key flags (needed under REPLICA IDENTITY FULL)."""
        self.names = tuple(c[1] for c in self.columns)
        self.key = tuple(c[1] for c in self.columns if c[0] & 1)
        self.primary_key = self.key if primary_key is None else primary_key
        cols, decs = [], []
        for _, name, oid, _typmod in self.columns:
            dec, logical, native = type_info(oid, catalog)
            decs.append(dec)
            cols.append(Column(name, logical, name not in self.primary_key, native))
        self.decoders = decs
        self.schema = Schema(tuple(cols), self.primary_key)
        self.fast_tuple, self.fast_record, self.fast_run = compile_readers(
            self.oid, self.names, decs, warm_up)

    def type_oids(self) -> list[int]:
        return [c[2] for c in self.columns]

    def decode_error(self, i: int, raw: bytes, exc: Exception) -> DataError:
        """The error for column ``i``'s text ``raw`` that its decoder refused."""
        return DataError(f"{self.stream}: cannot decode column {self.names[i]!r} "
                         f"({self.schema.columns[i].native}) from {raw[:80]!r}: {exc}",
                         column=self.names[i], value=raw)


class PgOutputDecoder:
    """Decodes pgoutput messages; keeps the relation cache (by relation oid)."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self.catalog: Catalog = {}
        self.in_stream = False
        """Inside a protocol v2 stream block (between Stream Start and Stream Stop)."""
        self.change_xid = 0
        """The (sub)transaction of the last change decoded inside a stream block."""

    def decode(self, data: bytes, pos: int = 0) -> tuple[Any, ...]:
        """Decode the message starting at ``pos`` of ``data``."""
        kind = data[pos]
        pos += 1
        if self.in_stream and kind in _XID_PREFIXED:
            self.change_xid = _UI(data, pos)[0]
            pos += 4
        if kind == 0x49:  # I
            rel = self.relations[_UI(data, pos)[0]]
            try:
                return ("I", rel, rel.fast_tuple(data, pos + 5)[0])
            except Exception:  # noqa: BLE001 - the careful path names the column
                return ("I", rel, self._slow_tuple(data, pos + 5, rel)[0])
        if kind == 0x55:  # U
            rel = self.relations[_UI(data, pos)[0]]
            pos += 4
            old = None
            tag = data[pos]
            whole = tag == 0x4F  # O: the whole old row, TOASTed values in full
            if tag in (0x4B, 0x4F):  # K or O
                old, pos = self._tuple(data, pos + 1, rel)
                if tag == 0x4B:
                    old = {k: old[k] for k in rel.key}
                tag = data[pos]
            row, _ = self._tuple(data, pos + 1, rel)
            if whole and old is not None and UNCHANGED in row.values():
                row = {k: old[k] if v is UNCHANGED else v for k, v in row.items()}
            return ("U", rel, row, old)
        if kind == 0x44:  # D
            rel = self.relations[_UI(data, pos)[0]]
            tag = data[pos + 4]
            old, _ = self._tuple(data, pos + 5, rel)
            if tag == 0x4B:
                old = {k: old[k] for k in rel.key}
            return ("D", rel, old)
        if kind == 0x42:  # B
            final_lsn, _ts, xid = _BEGIN(data, pos)
            return ("B", final_lsn, xid)
        if kind == 0x43:  # C
            _flags, commit_lsn, end_lsn, _ts = _COMMIT(data, pos)
            return ("C", commit_lsn, end_lsn)
        if kind == 0x52:  # R
            return ("R", self._relation(data, pos))
        if kind == 0x54:  # T
            n = _I(data, pos)[0]
            pos += 5
            rels = [self.relations[_UI(data, pos + 4 * i)[0]] for i in range(n)]
            return ("T", rels)
        if kind == 0x4D:  # M
            flags = data[pos]
            lsn = _Q(data, pos + 1)[0]
            pos += 9
            end = data.index(b"\0", pos)
            prefix = data[pos:end].decode()
            length = _I(data, end + 1)[0]
            content = data[end + 5:end + 5 + length]
            return ("M", bool(flags & 1), prefix, content, lsn)
        if kind == 0x59:  # Y
            oid = _UI(data, pos)[0]
            ns_end = data.index(b"\0", pos + 4)
            name_end = data.index(b"\0", ns_end + 1)
            return ("Y", oid, data[ns_end + 1:name_end].decode())
        if kind == 0x4F:  # O
            return ("O",)
        if kind == 0x53:  # S: stream start
            self.in_stream = True
            return ("S", _UI(data, pos)[0])
        if kind == 0x45:  # E: stream stop
            self.in_stream = False
            return ("E",)
        if kind == 0x63:  # c: stream commit
            xid = _UI(data, pos)[0]
            _flags, commit_lsn, end_lsn, _ts = _COMMIT(data, pos + 4)
            return ("c", xid, commit_lsn, end_lsn)
        if kind == 0x41:  # A: stream abort
            xid, subxid = struct.unpack_from("!II", data, pos)
            return ("A", xid, subxid)
        raise DataError(f"pgoutput: unsupported message type {chr(kind)!r}")

    def decode_record(self, data: bytes, pos: int = 0) -> tuple[Any, ...]:
        """As :meth:`decode`, but an Insert's row is a value tuple in the relation's column
        order: ``("I", relation, record)`` (the per-message form of ``decode_chunk``)."""
        if data[pos] == 0x49 and not self.in_stream:
            rel = self.relations[_UI(data, pos + 1)[0]]
            try:
                return ("I", rel, rel.fast_record(data, pos + 6)[0])
            except Exception:  # noqa: BLE001 - the careful path names the column
                return ("I", rel, tuple(self._slow_tuple(data, pos + 6, rel)[0].values()))
        return self.decode(data, pos)

    def decode_chunk(self, data: bytes, pos: int = 0) -> tuple[list[tuple[Any, ...]], int]:
        """Decode the replication stream in ``data`` from ``pos``: protocol messages, each
        ``d`` + length + a CopyData payload (``w`` XLogData: the pgoutput message 25 bytes
        in; ``k`` keepalive), into events, in order:

        - a run of Inserts of one relation: one ``("I*", relation, records)``
        - a keepalive: ``("k", wal_end, reply_requested)``
        - a change inside a v2 stream block (I, U, D, T, M): ``("X", change_xid, event)``
        - anything else: what :meth:`decode` returns.

        Stops at the end of the last whole message, before a message that is not CopyData
        (the connection's to handle) and after a Relation message, inside stream blocks too
        (so the caller can resolve the relation's types and key before the messages after
        it are decoded). Returns the events and the position where it stopped."""
        out: list[tuple[Any, ...]] = []
        append = out.append
        decode = self.decode
        relations = self.relations
        stop = len(data)
        while pos + 5 <= stop:
            nxt = pos + 1 + _I(data, pos + 1)[0]
            if nxt > stop or data[pos] != 0x64:  # a partial message, or not CopyData
                break
            if data[pos + 5] != 0x77:  # k: keepalive
                wal_end, _ts, reply = _KEEPALIVE(data, pos + 6)
                append(("k", wal_end, bool(reply)))
                pos = nxt
                continue
            kind = data[pos + 30]
            if self.in_stream:
                ev = decode(data[pos + 5:nxt], 25)
                append(("X", self.change_xid, ev) if kind in _STREAMED else ev)
                if kind == 0x52:  # R
                    return out, nxt
            elif kind == 0x49:  # I
                rel = relations.get(_UI(data, pos + 31)[0])
                records: list[tuple[Any, ...]] = []
                if rel is not None:
                    try:
                        pos = rel.fast_run(data, pos, stop, records.append)
                    except Exception:  # noqa: BLE001 - decode() below names the column
                        pos = _skip(data, pos, len(records))
                if records:
                    append(("I*", rel, records))
                    continue
                nxt = pos + 1 + _I(data, pos + 1)[0]
                ev = decode(data[pos + 5:nxt], 25)  # the careful path (or the error)
                append(("I*", ev[1], [tuple(ev[2].values())]))
            else:
                append(decode(data[pos + 5:nxt], 25))
                if kind == 0x52:  # R
                    return out, nxt
            pos = nxt
        return out, pos

    def _relation(self, data: bytes, pos: int) -> Relation:
        oid = _UI(data, pos)[0]
        pos += 4
        end = data.index(b"\0", pos)
        namespace = data[pos:end].decode() or "pg_catalog"
        pos = end + 1
        end = data.index(b"\0", pos)
        name = data[pos:end].decode()
        pos = end + 1
        ident = chr(data[pos])
        ncols = _H(data, pos + 1)[0]
        pos += 3
        cols = []
        for _ in range(ncols):
            flags = data[pos]
            end = data.index(b"\0", pos + 1)
            cname = data[pos + 1:end].decode()
            typ, typmod = struct.unpack_from("!Ii", data, end + 1)
            cols.append((flags, cname, typ, typmod))
            pos = end + 9
        rel = Relation(oid, namespace, name, ident, cols)
        rel.build(self.catalog)
        self.relations[oid] = rel
        return rel

    def _tuple(self, data: bytes, pos: int, rel: Relation) -> tuple[dict[str, Any], int]:
        try:
            result: tuple[dict[str, Any], int] = rel.fast_tuple(data, pos)
            return result
        except Exception:  # noqa: BLE001 - the careful path below names the column
            return self._slow_tuple(data, pos, rel)

    def _slow_tuple(self, data: bytes, pos: int, rel: Relation) -> tuple[dict[str, Any], int]:
        ncols = _H(data, pos)[0]
        pos += 2
        decoders = rel.decoders
        values: list[Any] = []
        append = values.append
        for i in range(ncols):
            kind = data[pos]
            pos += 1
            if kind == 0x74:  # t
                n = _I(data, pos)[0]
                pos += 4
                raw = data[pos:pos + n]
                pos += n
                try:
                    append(decoders[i](raw))
                except Exception as exc:
                    raise rel.decode_error(i, raw, exc) from exc
            elif kind == 0x6E:  # n
                append(None)
            elif kind == 0x75:  # u
                append(UNCHANGED)
            else:  # b: binary, only with the binary option, which etlsync does not request
                n = _I(data, pos)[0]
                append(data[pos + 4:pos + 4 + n])
                pos += 4 + n
        return dict(zip(rel.names, values, strict=False)), pos


def _skip(data: bytes, pos: int, count: int) -> int:
    """The position ``count`` protocol messages after ``pos``."""
    for _ in range(count):
        pos += 1 + _I(data, pos + 1)[0]
    return pos


warm_up(PgOutputDecoder().decode_chunk, b"")
