"""Error classification: transient vs permanent vs bad data, across drivers."""

from __future__ import annotations

import errno

import asyncpg
import pymongo.errors
import pymysql.err
import pytest

from etlsync.core.errors import ConfigError, DataError, StageError
from etlsync.resilience.classify import (
    Classification,
    ErrorKind,
    TransientError,
    classify,
    classify_http_status,
    parse_retry_after,
    register_classifier,
    unregister_classifier,
)

T, P, B = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.BAD_DATA


@pytest.mark.parametrize(("exc", "kind"), [
    (ConnectionResetError("reset"), T),
    (TimeoutError(), T),
    (OSError(errno.ECONNREFUSED, "refused"), T),
    (OSError(errno.ENOSPC, "disk full"), P),
    (PermissionError("nope"), P),
    (DataError("bad value", column="x"), B),
    (ValueError("invalid literal"), B),
    (ConfigError("bad option"), P),
    (RuntimeError("unknown"), P),
    (TransientError("later"), T),
])
def test_builtin_errors(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc).kind is kind


@pytest.mark.parametrize(("exc", "kind"), [
    (asyncpg.exceptions.SerializationError("x"), T),
    (asyncpg.exceptions.DeadlockDetectedError("x"), T),
    (asyncpg.exceptions.ConnectionDoesNotExistError("x"), T),
    (asyncpg.exceptions.AdminShutdownError("x"), T),
    (asyncpg.exceptions.TooManyConnectionsError("x"), T),
    (asyncpg.exceptions.InvalidPasswordError("x"), P),
    (asyncpg.exceptions.UndefinedTableError("x"), P),
    (asyncpg.exceptions.NotNullViolationError("x"), B),
    (asyncpg.exceptions.NumericValueOutOfRangeError("x"), B),
    (asyncpg.exceptions.UniqueViolationError("x"), B),
    (asyncpg.exceptions._base.DataError("invalid input for query argument $1"), B),
    (asyncpg.exceptions.InterfaceError("connection is closed"), T),
])
def test_asyncpg_errors(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc).kind is kind


def test_reconnect_flag_only_for_connection_errors() -> None:
    assert classify(asyncpg.exceptions.ConnectionDoesNotExistError("x")).reconnect
    assert not classify(asyncpg.exceptions.DeadlockDetectedError("x")).reconnect


@pytest.mark.parametrize(("exc", "kind"), [
    (pymysql.err.OperationalError(2013, "Lost connection"), T),
    (pymysql.err.OperationalError(1213, "Deadlock found"), T),
    (pymysql.err.OperationalError(1205, "Lock wait timeout"), T),
    (pymysql.err.OperationalError(1045, "Access denied"), P),
    (pymysql.err.ProgrammingError(1146, "Table doesn't exist"), P),
    (pymysql.err.DataError(1406, "Data too long"), B),
    (pymysql.err.IntegrityError(1048, "Column cannot be null"), B),
    (pymysql.err.OperationalError(1366, "Incorrect integer value"), B),
])
def test_mysql_errors(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc).kind is kind


@pytest.mark.parametrize(("exc", "kind"), [
    (pymongo.errors.AutoReconnect("x"), T),
    (pymongo.errors.NetworkTimeout("x"), T),
    (pymongo.errors.DuplicateKeyError("dup", 11000), B),
    (pymongo.errors.OperationFailure("auth failed", 18), P),
    (pymongo.errors.OperationFailure("write conflict", 112), T),
])
def test_mongo_errors(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc).kind is kind


class _Response:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code = status
        self.headers = headers


class _HttpError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"http {status}")
        self.response = _Response(status, headers or {})


def test_http_status_hook_honours_retry_after() -> None:
    verdict = classify(_HttpError(429, {"Retry-After": "7"}))
    assert verdict.kind is T and verdict.retry_after == 7.0
    assert classify(_HttpError(503)).kind is T
    assert classify(_HttpError(401)).kind is P
    assert classify(_HttpError(422)).kind is B
    assert classify_http_status(404).kind is P


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("garbage") is None


def test_stage_error_classified_by_cause() -> None:
    err = StageError("p", "sink:x", ConnectionResetError("x"))
    assert classify(err).kind is T


def test_custom_classifier_first() -> None:
    class Quota(Exception):
        pass

    def rule(exc: BaseException) -> Classification | None:
        if isinstance(exc, Quota):
            return Classification(ErrorKind.TRANSIENT, "quota", retry_after=1.5)
        return None

    register_classifier(rule)
    try:
        assert classify(Quota()).retry_after == 1.5
    finally:
        unregister_classifier(rule)
    assert classify(Quota()).kind is P


def test_sqlstate_attribute_of_other_clients() -> None:
    class PgServerError(Exception):
        code = "40P01"

    assert classify(PgServerError()).kind is T
    PgServerError.code = "28P01"
    assert classify(PgServerError()).kind is P


def test_service_not_ready_caused_by_refused_connection_is_transient() -> None:
    from etlsync.core.errors import ServiceNotReady

    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as exc:
            raise ServiceNotReady("cannot connect to PostgreSQL") from exc
    except ServiceNotReady as err:
        assert classify(err).kind is T
    assert classify(ServiceNotReady("wal_level must be logical")).kind is P


def test_sqlite_errors() -> None:
    import sqlite3

    assert classify(sqlite3.IntegrityError("NOT NULL constraint failed")).kind is B
    assert classify(sqlite3.OperationalError("database is locked")).kind is T
    assert classify(sqlite3.OperationalError("no such table: x")).kind is P
