"""Fixtures of the codegen tests: toolchains (installed where we may, else skip / fail
under CI) and database URLs."""

from __future__ import annotations

import os

import pytest

from tests.conftest import service_missing
from tests.support import toolchains

ENSURE = {"go": toolchains.ensure_go, "java": toolchains.ensure_java,
          "node": toolchains.ensure_node, "python": lambda: None}


def need_toolchain(lang: str) -> None:
    problem = ENSURE[lang]()
    if problem:
        service_missing(f"{lang}: {problem}")
    if lang == "node" and toolchains.prettier():
        os.environ.setdefault("ETLSYNC_PRETTIER", toolchains.prettier() or "")


@pytest.fixture
def pg_url(pg_dsn: str) -> str:
    return pg_dsn


@pytest.fixture
def mysql_url(mysql_params: dict[str, object]) -> str:
    p = mysql_params
    return f"mysql://{p['user']}@{p['host']}:{p['port']}/{p['db']}"
