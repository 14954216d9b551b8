"""TLS for real: a throw-away PostgreSQL cluster with ssl=on (initdb in a temp dir, a
self-signed certificate for 127.0.0.1), where only TLS connections are allowed. The shared
server (ssl off) is never touched."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from etlsync.connectors.postgres.cdc import PostgresCdcSource
from etlsync.connectors.postgres.replication.conninfo import parse_dsn
from etlsync.connectors.postgres.replication.protocol import ReplicationConnection
from etlsync.core.errors import ServiceNotReady
from tests.postgres_cdc.conftest import take

pytestmark = pytest.mark.integration

BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[tuple[int, str]]:
    """``(port, CA file)`` of a TLS-only cluster; skipped where it cannot be started."""
    if not (BIN / "initdb").exists() or os.geteuid() != 0 or not shutil.which("openssl"):
        pytest.skip("needs root, PostgreSQL 15 server binaries and openssl to start a cluster")
    root = Path(tempfile.mkdtemp(prefix="etlsync_tls_"))
    shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    try:
        init = _as_postgres(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U",
                            "postgres", "--no-sync", "-E", "UTF8")
        assert init.returncode == 0, init.stderr
        key, crt = data / "server.key", data / "server.crt"
        ssl = subprocess.run(
            ["openssl", "req", "-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key),
             "-out", str(crt)], capture_output=True, text=True, timeout=60)
        assert ssl.returncode == 0, ssl.stderr
        for f in (key, crt):
            shutil.chown(f, "postgres", "postgres")
        key.chmod(0o600)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{root}'\nssl = on\nwal_level = logical\n"
                       "max_wal_senders = 4\nmax_replication_slots = 4\nfsync = off\n"
                       "shared_buffers = 16MB\n")
        (data / "pg_hba.conf").write_text(
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostssl replication all 127.0.0.1/32 trust\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
            "hostnossl replication all 127.0.0.1/32 reject\n")
        start = _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                             "-w", "-t", "60", "start")
        assert start.returncode == 0, start.stderr + (root / "log").read_text()
        ca = root / "ca.crt"
        shutil.copy(crt, ca)
        yield port, str(ca)
    finally:
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


async def _identify(port: int, sslmode: str, ca: str | None = None) -> bool:
    params = parse_dsn(f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode={sslmode}")
    params.sslrootcert = ca
    conn = await ReplicationConnection(params).connect()
    try:
        assert (await conn.identify_system())[2] > 0
        return conn.tls
    finally:
        await conn.close()


async def test_replication_over_tls_with_certificate_checks(tls_cluster: tuple[int, str]
                                                            ) -> None:
    port, ca = tls_cluster
    assert await _identify(port, "require") is True
    assert await _identify(port, "verify-full", ca) is True
    with pytest.raises(Exception, match=r"(?i)certificate"):
        await _identify(port, "verify-full", None)  # self-signed: not in the system CAs
    # pg_hba.conf has no line for a plain connection: the error names the line to add
    with pytest.raises(ServiceNotReady, match=r"add a line 'host postgres postgres"):
        await _identify(port, "disable")


async def test_cdc_stream_over_tls(tls_cluster: tuple[int, str]) -> None:
    port, ca = tls_cluster
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                                 ssl="require")
    await conn.execute("CREATE TABLE tls_t (id int PRIMARY KEY, v text)")
    await conn.execute("INSERT INTO tls_t VALUES (1, 'snap')")
    src = PostgresCdcSource(dsn, slot="tls_slot", publication="tls_pub", tables=["tls_t"],
                            status_interval=0.5)
    agen = src.read(None)
    try:
        reader = asyncio.ensure_future(
            take(agen, lambda g: any(r.get("v") == "live" for b in g for r in b.rows)))
        await asyncio.sleep(1.5)
        await conn.execute("INSERT INTO tls_t VALUES (2, 'live')")
        got = await reader
        await agen.aclose()
        rows = [r for b in got for r in b.rows]
        assert rows == [{"id": 1, "v": "snap"}, {"id": 2, "v": "live"}]
        assert src._rconn is None  # closed with the generator
    finally:
        await conn.execute("SELECT pg_drop_replication_slot('tls_slot')")
        await conn.close()
