"""Shared fixtures: real services for integration tests, configured once per session.

A service that is missing skips its tests with the reason on a user's machine, and fails
them when ``CI=true`` (CI must never pass by skipping).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.support.services import ensure_services

pytest_plugins = ["tests.support.mongo"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_HOST = os.environ.get("ETLSYNC_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ETLSYNC_TEST_PG_PORT", "5432"))
MYSQL_HOST = os.environ.get("ETLSYNC_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("ETLSYNC_TEST_MYSQL_PORT", "3306"))
TEST_DB = "etlsync_test"


def service_missing(reason: str) -> None:
    """Skip the test (user machine) or fail it (CI) because a service is not available."""
    if IN_CI:
        pytest.fail(f"required service unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


SERVICE_FIXTURES = frozenset({"_services", "pg_dsn", "mysql_params", "_mongo_server",
                              "_small_oplog_server", "_oplog_server", "mongo_uri"})
"""Fixtures that reach a service: a test requesting one (directly or through another fixture)
is an integration test, marked so automatically (``-m "not integration"`` never starts one)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())) and \
                item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def _services() -> Iterator[list[str]]:
    """Configure the local servers once, when the first test that needs one starts."""
    yield ensure_services()


@pytest.fixture(scope="session")
def pg_dsn(_services: list[str]) -> str:
    """DSN of a PostgreSQL database ``etlsync_test`` (created if absent) with wal_level=logical."""
    try:
        import asyncpg  # noqa: F401
        import psycopg2  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        pass
    import subprocess

    base = f"postgresql://postgres@{PG_HOST}:{PG_PORT}"
    probe = subprocess.run(
        ["psql", f"{base}/postgres", "-Atc", f"select 1 from pg_database where datname='{TEST_DB}'"],
        capture_output=True, text=True, timeout=30,
    ) if _which("psql") else None
    if probe is None or probe.returncode != 0:
        service_missing(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} ({_services})")
    if probe is not None and probe.stdout.strip() != "1":
        subprocess.run(["psql", f"{base}/postgres", "-c", f"create database {TEST_DB}"],
                       capture_output=True, text=True, timeout=30)
    return f"{base}/{TEST_DB}"


@pytest.fixture(scope="session")
def mysql_params(_services: list[str]) -> dict[str, object]:
    """Connection parameters of a MariaDB database ``etlsync_test`` with a ROW binlog."""
    import subprocess

    client = _which("mariadb") or _which("mysql")
    if client is None:
        service_missing("MariaDB client not installed")
    assert client is not None
    probe = subprocess.run(
        [client, "-h", MYSQL_HOST, "-P", str(MYSQL_PORT), "-uroot", "-e",
         f"create database if not exists {TEST_DB}"],
        capture_output=True, text=True, timeout=30,
    )
    if probe.returncode != 0:
        service_missing(f"MariaDB not reachable at {MYSQL_HOST}:{MYSQL_PORT}: {probe.stderr.strip()}")
    return {"host": MYSQL_HOST, "port": MYSQL_PORT, "user": "root", "password": "", "db": TEST_DB}


@pytest.fixture
def unique_name() -> str:
    """A fresh identifier for tables, slots, topics: tests never share objects."""
    return f"t_{uuid.uuid4().hex[:10]}"


def _which(cmd: str) -> str | None:
    import shutil

    return shutil.which(cmd)
