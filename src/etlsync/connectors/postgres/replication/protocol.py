"""An asyncio client of PostgreSQL's streaming replication protocol (``replication=database``).

Covers what logical replication needs: startup with TLS negotiation, trust / cleartext / md5 /
SCRAM-SHA-256 authentication, simple queries (``IDENTIFY_SYSTEM``,
``CREATE_REPLICATION_SLOT``), ``START_REPLICATION`` in CopyBoth mode, XLogData and keepalive
frames, and standby status updates.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from etlsync.connectors.postgres.replication.conninfo import ConnParams
from etlsync.core.errors import ConfigError, DataError, EtlsyncError, ServiceNotReady

_I = struct.Struct("!i")
_H = struct.Struct("!h")
_Q = struct.Struct("!Q")
_XLOG = struct.Struct("!QQq")
_KEEPALIVE = struct.Struct("!QqB")
_STATUS = struct.Struct("!cQQQqB")
T = TypeVar("T")
PG_EPOCH_US = 946_684_800_000_000
"""Microseconds from the Unix epoch to 2000-01-01, the protocol's clock origin."""
OUTPUT_SETTINGS = {"DateStyle": "ISO", "TimeZone": "UTC", "extra_float_digits": "3",
                   "IntervalStyle": "iso_8601"}
"""The settings that fix the text output of values: the walsender's and the snapshot's
sessions both run with them, so both read the same text."""


class PgServerError(EtlsyncError):
    """An ErrorResponse from the server; ``fields`` maps field codes (``C``, ``M``, ...)."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.code = fields.get("C", "")
        msg = f"{fields.get('S', 'ERROR')} {self.code}: {fields.get('M', '')}"
        if fields.get("D"):
            msg += f" ({fields['D']})"
        if fields.get("H"):
            msg += f" hint: {fields['H']}"
        super().__init__(msg)


def format_lsn(lsn: int) -> str:
    """``X/Y`` text of an LSN."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """The integer value of an ``X/Y`` LSN."""
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def now_pg_us() -> int:
    """The current time in the protocol's clock (microseconds since 2000-01-01)."""
    return time.time_ns() // 1000 - PG_EPOCH_US


def _fields(payload: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


class _Wire(asyncio.Protocol):
    """Socket data goes straight into one buffer; the reader waits on a future. Reading
    pauses while more than ``HIGH`` bytes wait (bounded memory behind a slow pipeline)."""

    HIGH = 8 << 20

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.eof = False
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > self.HIGH and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self) -> None:
        """Wait until more data arrived (resuming reading if it was paused)."""
        if self.paused and len(self.buf) < self.HIGH // 2 and self.transport is not None:
            self.transport.resume_reading()
            self.paused = False
        if self.eof:
            raise ConnectionError("PostgreSQL closed the replication connection")
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


COALESCE_BYTES = 32 << 10
COALESCE_SECONDS = 0.0005
"""A read that finds less than COALESCE_BYTES waits this long for more: fewer, larger reads
when the client is faster than the server (each wake-up costs more than a message)."""


class ReplicationConnection:
    """One replication connection. Use :meth:`connect`; close with :meth:`close`.

    :param params: host, credentials, database and TLS mode.
    :param settings: extra startup parameters (GUCs) for the walsender session.
    """

    def __init__(self, params: ConnParams, settings: dict[str, str] | None = None) -> None:
        self.params = params
        self.settings = {**OUTPUT_SETTINGS, "client_encoding": "UTF8", **(settings or {})}
        self.server_params: dict[str, str] = {}
        self.tls = False
        self._wire: _Wire | None = None
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self.copy_done = False

    # -- connection ----------------------------------------------------------------------
    async def connect(self) -> ReplicationConnection:
        """Open the socket, negotiate TLS, authenticate, wait for ReadyForQuery.

        :raises ServiceNotReady: when TLS is required but refused, or pg_hba has no
            ``replication`` entry for this user and host.
        """
        p = self.params
        loop = asyncio.get_running_loop()
        try:
            transport, wire = await asyncio.wait_for(
                loop.create_connection(lambda: _Wire(loop), p.host, p.port), p.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ServiceNotReady(
                f"cannot connect to PostgreSQL at {p.host}:{p.port}: {exc}") from exc
        assert isinstance(transport, asyncio.Transport)
        self._wire, self._transport, self._buf = wire, transport, wire.buf
        ctx = p.ssl_context()
        if ctx is not None:
            transport.write(_I.pack(8) + _I.pack(80877103))
            while not wire.buf:
                await wire.wait()
            answer = bytes(wire.buf[:1])
            del wire.buf[:1]
            if answer == b"S":
                tls = await loop.start_tls(transport, wire, ctx, server_hostname=p.host)
                assert isinstance(tls, asyncio.Transport)
                self._transport = wire.transport = tls
                self.tls = True
            elif p.sslmode in ("require", "verify-ca", "verify-full"):
                transport.close()
                raise ServiceNotReady(
                    f"PostgreSQL at {p.host}:{p.port} refused TLS but sslmode={p.sslmode!r} "
                    "requires it: enable ssl=on on the server (with ssl_cert_file/ssl_key_file) "
                    "or use sslmode=prefer/disable")
        body = struct.pack("!i", 196608)
        params = {"user": p.user, "database": p.database, "replication": "database",
                  "application_name": "etlsync", **self.settings}
        for k, v in params.items():
            body += k.encode() + b"\0" + v.encode() + b"\0"
        body += b"\0"
        self._send_raw(_I.pack(len(body) + 4) + body)
        try:
            await self._authenticate()
        except PgServerError as exc:
            self.abort()
            if exc.code == "28000" and "pg_hba.conf" in str(exc):
                # logical replication connections match pg_hba.conf lines by database name
                # (the 'replication' keyword is for physical replication only)
                kind = "hostssl" if self.tls else "host"
                raise ServiceNotReady(
                    f"{exc}: add a line '{kind} {p.database} {p.user} <client-address>/32 "
                    "scram-sha-256' to pg_hba.conf and reload the server") from exc
            raise
        return self

    async def _authenticate(self) -> None:
        scram: Scram | None = None
        while True:
            t, payload = await self._read_message()
            if t == b"R":
                code = _I.unpack_from(payload)[0]
                if code == 0:
                    continue
                if code == 3:
                    self._send(b"p", self._password().encode() + b"\0")
                elif code == 5:
                    self._send(b"p", self._md5(payload[4:8]))
                elif code == 10:
                    mechs = [m.decode() for m in payload[4:].split(b"\0") if m]
                    if "SCRAM-SHA-256" not in mechs:
                        raise ConfigError(f"server offers SASL mechanisms {mechs}; "
                                          "etlsync supports SCRAM-SHA-256")
                    scram = Scram(self._password())
                    first = scram.client_first()
                    self._send(b"p", b"SCRAM-SHA-256\0" + _I.pack(len(first)) + first)
                elif code == 11 and scram is not None:
                    self._send(b"p", scram.client_final(payload[4:]))
                elif code == 12 and scram is not None:
                    scram.verify(payload[4:])
                else:
                    raise ConfigError(f"unsupported authentication request {code}")
                await self._drain()
            elif t == b"S":
                k, v, _ = payload.split(b"\0", 2)
                self.server_params[k.decode()] = v.decode()
            elif t == b"Z":
                return
            elif t == b"E":
                raise PgServerError(_fields(payload))

    def _password(self) -> str:
        if self.params.password is None:
            raise ConfigError(f"PostgreSQL asks for a password for user {self.params.user!r}: "
                              "pass it in the DSN, as password=, or in PGPASSWORD")
        return self.params.password

    def _md5(self, salt: bytes) -> bytes:
        inner = hashlib.md5((self._password() + self.params.user).encode()).hexdigest()
        return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\0"

    def abort(self) -> None:
        """Drop the socket without the goodbye message (for errors and kill tests)."""
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    async def close(self) -> None:
        """Send Terminate and close the socket."""
        t = self._transport
        if t is None:
            return
        self._transport = None
        with contextlib.suppress(OSError, ConnectionError, RuntimeError):
            t.write(b"X" + _I.pack(4))
            t.close()

    # -- framing -------------------------------------------------------------------------
    def _send_raw(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("replication connection is closed")
        self._transport.write(data)

    def _send(self, kind: bytes, body: bytes) -> None:
        self._send_raw(kind + _I.pack(len(body) + 4) + body)

    async def _drain(self) -> None:
        """Writes are small control messages: nothing to wait for."""

    async def _fill(self) -> None:
        wire = self._wire
        assert wire is not None
        before = len(wire.buf)
        await wire.wait()
        if len(wire.buf) - before < COALESCE_BYTES and not wire.eof:
            await asyncio.sleep(COALESCE_SECONDS)

    async def _read_message(self) -> tuple[bytes, bytes]:
        buf = self._buf
        while len(buf) < 5:
            await self._fill()
        n = _I.unpack_from(buf, 1)[0]
        while len(buf) < n + 1:
            await self._fill()
        t, payload = bytes(buf[0:1]), bytes(buf[5:n + 1])
        del buf[:n + 1]
        return t, payload

    # -- simple queries ------------------------------------------------------------------
    async def query(self, sql: str) -> list[tuple[str | None, ...]]:
        """Run one simple-protocol command; return its rows as text.

        :raises PgServerError: carrying the server's code, message, detail and hint.
        """
        self._send(b"Q", sql.encode() + b"\0")
        await self._drain()
        rows: list[tuple[str | None, ...]] = []
        error: PgServerError | None = None
        while True:
            t, payload = await self._read_message()
            if t == b"D":
                ncols = _H.unpack_from(payload)[0]
                pos = 2
                row: list[str | None] = []
                for _ in range(ncols):
                    ln = _I.unpack_from(payload, pos)[0]
                    pos += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(payload[pos:pos + ln].decode())
                        pos += ln
                rows.append(tuple(row))
            elif t == b"E":
                error = PgServerError(_fields(payload))
            elif t == b"Z":
                if error is not None:
                    raise error
                return rows
            elif t == b"W":
                raise ConfigError("use start_replication() for START_REPLICATION")

    async def identify_system(self) -> tuple[str, int, int, str | None]:
        """``(systemid, timeline, xlogpos, dbname)``."""
        row = (await self.query("IDENTIFY_SYSTEM"))[0]
        return str(row[0]), int(row[1] or 0), parse_lsn(str(row[2])), row[3]

    # -- streaming -----------------------------------------------------------------------
    async def start_replication(self, slot: str, lsn: int, options: dict[str, str]) -> None:
        """Send ``START_REPLICATION SLOT ... LOGICAL`` and wait for CopyBothResponse.

        :param options: plugin options, each value sent as a quoted literal (a list of
            names, such as ``publication_names``, quotes each name itself:
            :func:`quote_ident`)."""
        opts = ", ".join(f"{quote_ident(k)} {quote_literal(v)}" for k, v in options.items())
        sql = f"START_REPLICATION SLOT {quote_ident(slot)} LOGICAL {format_lsn(lsn)} ({opts})"
        self._send(b"Q", sql.encode() + b"\0")
        await self._drain()
        while True:
            t, payload = await self._read_message()
            if t == b"W":
                return
            if t == b"E":
                err = PgServerError(_fields(payload))
                while t != b"Z":
                    t, payload = await self._read_message()
                raise err

    async def read_decoded(self, decode: Callable[[bytes, int], tuple[list[T], int]],
                           max_bytes: int = 1 << 20) -> list[T]:
        """Decode the buffered stream (waiting for a whole message first): ``decode(data,
        0)`` gets a copy of up to about ``max_bytes`` of it (at least the first whole
        message, which is CopyData; the copy may end inside a message) and returns its
        events and where it stopped, which is where the next call starts. ``decode`` does
        the framing itself (:meth:`PgOutputDecoder.decode_chunk`): no pass that cuts the
        stream into a ``bytes`` per message first.

        :raises PgServerError: when the server ends the stream with an error (once the
            messages before the error were decoded).
        :raises ConnectionError: when the server ended the stream (CopyDone) or the
            connection."""
        buf = self._buf
        while True:
            if len(buf) < 5:
                await self._fill()
                continue
            size = 1 + _I.unpack_from(buf, 1)[0]
            if len(buf) < size:
                await self._fill()
                continue
            if buf[0] != 0x64:  # not CopyData: the end of the stream, or a notice
                kind, payload = buf[0], bytes(buf[5:size])
                del buf[:size]
                if kind == 0x45:  # E
                    raise PgServerError(_fields(payload))
                if kind == 0x63:  # c: CopyDone
                    self.copy_done = True
                    raise ConnectionError("server ended the replication stream (CopyDone)")
                continue
            # one copy, through a view: ``bytes(buf[:n])`` would copy twice (11x slower)
            with memoryview(buf) as view:
                data = view[:max(max_bytes, size)].tobytes()
            events, pos = decode(data, 0)
            if pos == 0:
                raise DataError(f"replication stream: {decode!r} took no message of "
                                f"{data[:size]!r:.200}")
            del buf[:pos]
            return events

    def send_status(self, lsn: int, reply: bool = False) -> None:
        """A standby status update with ``lsn`` as written, flushed and applied position."""
        self._send(b"d", _STATUS.pack(b"r", lsn, lsn, lsn, now_pg_us(), 1 if reply else 0))

    async def flush(self) -> None:
        """Wait until what was sent left the client's buffer."""
        await self._drain()


def copydata(payloads: Sequence[bytes]) -> bytes:
    """``payloads`` framed as the server sends them in CopyBoth mode: ``d`` + length +
    payload each (for :meth:`PgOutputDecoder.decode_chunk` on payloads from elsewhere, such
    as the SQL decoding functions)."""
    return b"".join(b"d" + _I.pack(len(p) + 4) + p for p in payloads)


def warm_up(fn: Any, *args: Any) -> None:
    """Call ``fn`` enough times for CPython 3.11 to quicken its bytecode. The interpreter
    specializes a function's instructions only after about 8 calls; a loop inside a function
    called once per chunk would run its first chunks unspecialized (measured: +20%
    instructions per message)."""
    for _ in range(10):
        with contextlib.suppress(Exception):
            fn(*args)


def parse_xlogdata(frame: bytes) -> tuple[int, int, int]:
    """``(wal_start, wal_end, send_time_us)`` of a ``w`` frame; data starts at byte 25."""
    return _XLOG.unpack_from(frame, 1)


def parse_keepalive(frame: bytes, pos: int = 0) -> tuple[int, int, bool]:
    """``(wal_end, send_time_us, reply_requested)`` of a ``k`` frame starting at ``pos``."""
    end, ts, reply = _KEEPALIVE.unpack_from(frame, pos + 1)
    return end, ts, bool(reply)


class Scram:
    """The client side of SCRAM-SHA-256 (RFC 5802/7677) without channel binding."""

    def __init__(self, password: str, nonce: str | None = None, user: str = "") -> None:
        self.password = password.encode()
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n={user},r={self.nonce}"
        self.server_signature = b""

    def client_first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.nonce):
            raise ConfigError("SCRAM: server nonce does not extend the client nonce")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored = hashlib.sha256(client_key).digest()
        final_bare = f"c=biws,r={nonce}"
        auth = f"{self.first_bare},{server_first.decode()},{final_bare}".encode()
        sig = hmac.digest(stored, auth, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, sig, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.server_signature = hmac.digest(server_key, auth, "sha256")
        return f"{final_bare},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        if base64.b64decode(attrs.get("v", "")) != self.server_signature:
            raise ConfigError("SCRAM: the server's signature does not match (wrong server?)")


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def qualified(names: Sequence[str]) -> str:
    """``"schema"."table"`` from its parts."""
    return ".".join(quote_ident(n) for n in names)
