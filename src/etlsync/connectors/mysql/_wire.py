"""The one place that uses aiomysql's private packet API (pinned: aiomysql==0.2.0).

Raw commands for replication (``COM_REGISTER_SLAVE``, ``COM_BINLOG_DUMP``), raw packet
reads for the binlog stream, and ``LOAD DATA LOCAL INFILE`` fed from memory instead of a
file. Everything else goes through aiomysql's public cursor API.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import pymysql

MAX_PACKET = 0xFFFFFF


def lost(message: str) -> pymysql.err.OperationalError:
    return pymysql.err.OperationalError(2013, message)


async def send_command(conn: Any, command: int, payload: bytes) -> None:
    """Send one command packet (sequence id 0) without reading a reply."""
    await conn._execute_command(command, payload)
    await conn._writer.drain()


async def read_packet(conn: Any) -> bytes:
    """Read one whole packet (joining 16 MiB continuation packets) as bytes.

    :raises pymysql.err.OperationalError: the connection was lost.
    """
    reader = conn._reader
    if reader is None:
        raise lost("connection closed")
    buff = b""
    while True:
        try:
            header = await reader.readexactly(4)
            size = header[0] | header[1] << 8 | header[2] << 16
            data = await reader.readexactly(size) if size else b""
        except (OSError, EOFError) as exc:  # IncompleteReadError is an EOFError
            conn.close()
            raise lost(f"lost connection to MySQL server while reading the binlog ({exc})") from exc
        buff = data if not buff else buff + data
        if size != MAX_PACKET:
            return buff


def raise_if_error(packet: bytes) -> None:
    """Raise the server's error when ``packet`` is an ERR packet."""
    if packet[:1] == b"\xff":
        errno = struct.unpack_from("<H", packet, 1)[0]
        text = packet[3:]
        if text[:1] == b"#":
            text = text[6:]
        exc_cls = pymysql.err.OperationalError if errno in (1236, 1227, 2013) else pymysql.err.InternalError
        raise exc_cls(errno, text.decode("utf-8", "replace"))


async def command_ok(conn: Any, command: int, payload: bytes) -> None:
    """Send a command and expect an OK packet."""
    await send_command(conn, command, payload)
    packet = await read_packet(conn)
    raise_if_error(packet)


async def load_data_stream(conn: Any, sql: str, chunks: Iterable[bytes]) -> int:
    """Run ``LOAD DATA LOCAL INFILE`` (``sql``) feeding the file content from ``chunks``.

    :returns: the number of affected rows reported by the server.
    """
    await conn._execute_command(3, sql.encode(conn._encoding))  # COM_QUERY
    first = await read_packet(conn)
    raise_if_error(first)
    if first[:1] != b"\xfb":
        raise pymysql.err.InternalError(0, "server did not request LOCAL INFILE data (local_infile off?)")
    conn._next_seq_id = 2
    writer = conn._writer
    for chunk in chunks:  # each chunk goes out at once: the server parses while we format
        for i in range(0, len(chunk), MAX_PACKET - 1):
            conn.write_packet(chunk[i:i + MAX_PACKET - 1])
        await writer.drain()
    conn.write_packet(b"")
    await writer.drain()
    ok = await read_packet(conn)
    raise_if_error(ok)
    # OK packet: 0x00, affected rows (lenenc), ...
    return _lenenc(ok, 1)[0]


def _lenenc(buf: bytes, pos: int) -> tuple[int, int]:
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        return buf[pos + 1] | buf[pos + 2] << 8, pos + 3
    if first == 0xFD:
        return int.from_bytes(buf[pos + 1:pos + 4], "little"), pos + 4
    return int.from_bytes(buf[pos + 1:pos + 9], "little"), pos + 9
