"""A real MongoDB wire-protocol server (SecantusDB, from PyPI) in its own process, on a free
port, for the whole session (it outlives pipeline processes killed with SIGKILL). Registered
for every test directory by ``tests/conftest.py`` (``pytest_plugins``): the server starts only
when a test asks for ``mongo_uri``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    try:
        c: Any = MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                             serverSelectionTimeoutMS=300)
        try:
            c.admin.command("ping")
            return True
        finally:
            c.close()
    except PyMongoError:
        return False


_SERVE = ("import sys; from secantus import SecantusDBServer; s = SecantusDBServer("
          "host='127.0.0.1', port=int(sys.argv[1]), storage_path=sys.argv[2], "
          "replica_set_name='secantus', transaction_lifetime_seconds=float(sys.argv[3])); "
          "s.start(); s.wait()")


def start_server(storage: Path, *extra: str, transaction_lifetime: float | None = None
                 ) -> tuple[subprocess.Popen[bytes] | None, str, str]:
    """Start ``secantusd-py`` on a free port with its data in ``storage`` (a pytest temp
    dir, so a killed server leaves nothing behind); returns (process, uri, error).

    :param transaction_lifetime: abort a transaction its client left open after so many
        seconds (mongod's ``transactionLifetimeLimitSeconds``, 60 by default; the daemon has
        no flag for it, so the server is started through its Python API).
    """
    port = free_port()
    if transaction_lifetime is not None:
        cmd = [sys.executable, "-c", _SERVE, str(port), str(storage), str(transaction_lifetime)]
    else:
        exe = shutil.which("secantusd-py")
        cmd = [*([exe] if exe else [sys.executable, "-m", "secantus.cli"]),
               "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
               "--log-level", "WARNING", *extra]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        return None, "", f"cannot start SecantusDB: {exc}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-500:] if proc.stderr else ""
            return None, "", f"SecantusDB exited: {err}"
        if _ping(port):
            return proc, f"mongodb://127.0.0.1:{port}/?directConnection=true", ""
        time.sleep(0.1)
    proc.kill()
    return None, "", "SecantusDB did not answer within 30 s"


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()  # test data only; a graceful shutdown takes seconds
    proc.wait(10)


@pytest.fixture(scope="session")
def _mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    try:
        import pymongo  # noqa: F401
    except ImportError:
        yield "", "pymongo not installed (pip install 'etlsync[mongo]')"
        return
    # a run killed mid-transaction blocks its documents until the server aborts that
    # transaction: 5 s here (mongod: 60 s), so kill -9 tests restart promptly
    proc, uri, err = start_server(tmp_path_factory.mktemp("secantus"), transaction_lifetime=5)
    yield uri, err
    if proc is not None:
        stop_server(proc)


@pytest.fixture
def mongo_uri(_mongo_server: tuple[str, str]) -> str:
    """URI of the session's MongoDB wire-protocol server (a one-node replica set)."""
    uri, err = _mongo_server
    if not uri:
        service_missing(err)
    return uri
