"""Fixtures of the MongoDB tests: the session server (``mongo_uri``, from
``tests/support/mongo.py``), servers with short oplogs, a client and a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest import service_missing
from tests.support.mongo import start_server, stop_server


@pytest.fixture(scope="session")
def _small_oplog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    proc, uri, err = start_server(tmp_path_factory.mktemp("secantus"),
                                  "--oplog-max-entries", "300")
    yield uri, err
    if proc is not None:
        stop_server(proc)


@pytest.fixture
def small_oplog_uri(_small_oplog_server: tuple[str, str]) -> str:
    """A second server whose oplog keeps only 300 entries (for history-lost tests)."""
    uri, err = _small_oplog_server
    if not uri:
        service_missing(err)
    return uri


@pytest.fixture(scope="session")
def _oplog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    proc, uri, err = start_server(tmp_path_factory.mktemp("secantus"),
                                  "--oplog-max-entries", "3000")
    yield uri, err
    if proc is not None:
        stop_server(proc)


@pytest.fixture
def oplog_uri(_oplog_server: tuple[str, str]) -> str:
    """A server of its own for the oplog-tailing tests: SecantusDB scans the whole oplog for
    every oplog query, so its oplog is kept short (3,000 entries)."""
    uri, err = _oplog_server
    if not uri:
        service_missing(err)
    return uri


@pytest.fixture
async def mongo_client(mongo_uri: str) -> AsyncIterator[Any]:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(mongo_uri, uuidRepresentation="standard")
    yield client
    await client.close()


@pytest.fixture
async def mongo_db(mongo_client: Any, unique_name: str) -> AsyncIterator[Any]:
    """A fresh database on the session server, dropped afterwards."""
    db = mongo_client[unique_name]
    yield db
    await mongo_client.drop_database(unique_name)


