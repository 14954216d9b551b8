"""One home for error classification: transient, permanent, or bad data.

Every retry, breaker and dead-letter decision in etlsync asks :func:`classify`. It knows
asyncpg / SQLSTATE, aiomysql / PyMySQL, pymongo, sqlite3, ``OSError`` and timeouts, and HTTP-style
errors (an exception with a ``status`` / ``status_code`` or a ``response`` carrying one);
driver modules are only consulted when already imported. Add rules with
:func:`register_classifier`.
"""

from __future__ import annotations

import asyncio
import decimal
import email.utils
import errno
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from etlsync.core.errors import (
    ConfigError,
    ConflictError,
    DataError,
    SchemaError,
    ServiceNotReady,
    StageError,
)


class ErrorKind(StrEnum):
    """What a failure means for the data that caused it."""

    TRANSIENT = "transient"
    """Try again later: connection lost, timeout, deadlock, serialization failure, 429/503."""
    PERMANENT = "permanent"
    """Trying again cannot help: authentication, missing table, bad configuration."""
    BAD_DATA = "bad_data"
    """The rows themselves are wrong: isolate them (bisection) and dead-letter them."""


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict on one error.

    :param kind: transient, permanent or bad data.
    :param reason: a short machine-friendly reason (``"sqlstate 40P01"``, ``"http 503"``).
    :param retry_after: seconds the server asked us to wait (HTTP Retry-After), if any.
    :param reconnect: the connection is likely unusable: reopen the stage before retrying.
    """

    kind: ErrorKind
    reason: str
    retry_after: float | None = None
    reconnect: bool = False

    @property
    def transient(self) -> bool:
        return self.kind is ErrorKind.TRANSIENT


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` (seconds) is honoured by :mod:`retry`.

    HTTP connectors raise it for 429/503 with the parsed ``Retry-After`` header.
    """

    def __init__(self, message: str, *, retry_after: float | None = None,
                 reconnect: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reconnect = reconnect


class PermanentError(Exception):
    """A failure no retry can fix."""


Classifier = Callable[[BaseException], Classification | None]
_custom: list[Classifier] = []


def register_classifier(fn: Classifier) -> Classifier:
    """Add a rule consulted before the built-in ones; return ``None`` to pass. Usable as a
    decorator. Rules are process-wide; remove one with :func:`unregister_classifier`."""
    _custom.append(fn)
    return fn


def unregister_classifier(fn: Classifier) -> None:
    """Remove a rule added with :func:`register_classifier`."""
    _custom.remove(fn)


def _t(reason: str, *, reconnect: bool = False, retry_after: float | None = None) -> Classification:
    return Classification(ErrorKind.TRANSIENT, reason, retry_after, reconnect)


def _p(reason: str) -> Classification:
    return Classification(ErrorKind.PERMANENT, reason)


def _b(reason: str) -> Classification:
    return Classification(ErrorKind.BAD_DATA, reason)


# -- SQLSTATE (asyncpg, psycopg) ----------------------------------------------------------
_SQLSTATE_TRANSIENT = {"40001", "40P01", "55P03", "55006", "57014", "58030", "53000", "53100",
                       "53200", "53300", "53400"}
_SQLSTATE_RECONNECT = {"57P01", "57P02", "57P03", "57P04", "57P05"}


def classify_sqlstate(state: str) -> Classification:
    """Classify a PostgreSQL SQLSTATE code."""
    reason = f"sqlstate {state}"
    if state.startswith("08") or state in _SQLSTATE_RECONNECT:
        return _t(reason, reconnect=True)
    if state in _SQLSTATE_TRANSIENT or state.startswith("40"):
        return _t(reason)
    if state.startswith(("22", "23")):
        return _b(reason)
    return _p(reason)


# -- MySQL / MariaDB error codes ----------------------------------------------------------
_MYSQL_RECONNECT = {2002, 2003, 2006, 2013, 2055, 1053, 1927, 4031, 1152, 1158, 1159, 1160,
                    1161}
_MYSQL_TRANSIENT = {1040, 1205, 1213, 1317, 3024, 1969, 1203}
_MYSQL_BAD_DATA = {1048, 1062, 1264, 1265, 1292, 1366, 1406, 1452, 1451, 3140, 1690, 1416,
                   1367, 4025, 3819, 1411, 1918}


def classify_mysql_code(code: int) -> Classification:
    """Classify a MySQL/MariaDB server or client error number."""
    reason = f"mysql {code}"
    if code in _MYSQL_RECONNECT:
        return _t(reason, reconnect=True)
    if code in _MYSQL_TRANSIENT:
        return _t(reason)
    if code in _MYSQL_BAD_DATA:
        return _b(reason)
    return _p(reason)


# -- HTTP -------------------------------------------------------------------------------
_HTTP_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}
_HTTP_BAD_DATA = {400, 409, 413, 415, 422}


def parse_retry_after(value: str | float | int | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value))
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def classify_http_status(status: int, headers: Mapping[str, str] | None = None) -> Classification:
    """Classify an HTTP status, honouring ``Retry-After`` on 429/503 (and any transient)."""
    reason = f"http {status}"
    if status in _HTTP_TRANSIENT or status >= 500:
        retry_after = None
        if headers is not None:
            raw = headers.get("Retry-After") or headers.get("retry-after")
            retry_after = parse_retry_after(raw)
        return _t(reason, retry_after=retry_after)
    if status in _HTTP_BAD_DATA:
        return _b(reason)
    return _p(reason)


def _http_status(exc: BaseException) -> tuple[int, Mapping[str, str] | None] | None:
    for holder in (exc, getattr(exc, "response", None)):
        if holder is None:
            continue
        for attr in ("status_code", "status"):
            status = getattr(holder, attr, None)
            if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
                headers = getattr(holder, "headers", None)
                return status, headers if isinstance(headers, Mapping) or hasattr(
                    headers, "get") else None
    return None


# -- drivers ------------------------------------------------------------------------------
def _asyncpg(exc: BaseException) -> Classification | None:
    if "asyncpg" not in sys.modules:
        return None
    import asyncpg.exceptions as ape

    if isinstance(exc, ape._base.DataError):
        return _b("asyncpg encode")
    if isinstance(exc, ape.InterfaceError):
        text = str(exc).lower()
        if "closed" in text or ("connection" in text and "lost" in text):
            return _t("asyncpg connection closed", reconnect=True)
        return _p("asyncpg interface")
    if isinstance(exc, ape.PostgresError):
        state = getattr(exc, "sqlstate", None)
        if isinstance(exc, ape.PostgresConnectionError):
            return _t(f"sqlstate {state or '08000'}", reconnect=True)
        if isinstance(state, str) and state:
            return classify_sqlstate(state)
        return _p("asyncpg")
    return None


def _mysql(exc: BaseException) -> Classification | None:
    if "pymysql" not in sys.modules:
        return None
    import pymysql.err as pe

    if not isinstance(exc, pe.MySQLError):
        return None
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code is not None:
        verdict = classify_mysql_code(code)
        if verdict.kind is not ErrorKind.PERMANENT or code in (1045, 1044, 1146, 1049, 1142):
            return verdict
    if isinstance(exc, (pe.DataError, pe.IntegrityError)):
        return _b(f"mysql {code}" if code else "mysql data")
    if isinstance(exc, pe.InterfaceError):
        return _t("mysql interface", reconnect=True)
    if isinstance(exc, pe.OperationalError) and code is None:
        return _t("mysql operational", reconnect=True)
    return _p(f"mysql {code}" if code else "mysql")


def _mongo(exc: BaseException) -> Classification | None:
    if "pymongo" not in sys.modules:
        return None
    import pymongo.errors as me
    from bson.errors import InvalidDocument

    if not isinstance(exc, me.PyMongoError):
        return None
    if isinstance(exc, (me.AutoReconnect, me.ConnectionFailure)):
        return _t(f"mongo {type(exc).__name__}", reconnect=True)
    if isinstance(exc, (me.WaitQueueTimeoutError, me.ExecutionTimeout, me.WTimeoutError)):
        return _t(f"mongo {type(exc).__name__}")
    if isinstance(exc, (me.DuplicateKeyError, me.BulkWriteError, me.WriteError,
                        me.DocumentTooLarge, InvalidDocument)):
        return _b(f"mongo {type(exc).__name__}")
    has_label = getattr(exc, "has_error_label", None)
    if callable(has_label) and (has_label("TransientTransactionError")
                                or has_label("RetryableWriteError")):
        return _t("mongo transient label")
    if isinstance(exc, me.OperationFailure):
        code = exc.code
        if code in (6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 112, 251):
            return _t(f"mongo code {code}", reconnect=code in (6, 7, 89, 9001, 11600))
        if code in (121, 2, 11000, 17280, 16755):
            return _b(f"mongo code {code}")
        return _p(f"mongo code {code}")
    return _p(f"mongo {type(exc).__name__}")


_OS_TRANSIENT = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE,
                 errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN,
                 errno.ENETRESET, errno.EAGAIN, errno.ENOTCONN, errno.EHOSTDOWN}


def _sqlite(exc: BaseException) -> Classification | None:
    if "sqlite3" not in sys.modules:
        return None
    import sqlite3

    if not isinstance(exc, sqlite3.Error):
        return None
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError)):
        return _b(f"sqlite {type(exc).__name__}")
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return _t("sqlite busy")
    if "binding parameter" in text or ("type" in text and "not supported" in text):
        return _b("sqlite binding")
    return _p(f"sqlite {type(exc).__name__}")


def _sqlstate_attr(exc: BaseException) -> Classification | None:
    """Errors of other PostgreSQL clients carrying a SQLSTATE (psycopg ``sqlstate`` /
    ``pgcode``, etlsync's replication client ``code``)."""
    for attr in ("sqlstate", "pgcode", "code"):
        state = getattr(exc, attr, None)
        if isinstance(state, str) and len(state) == 5 and state.isalnum() and (
                state.upper() == state):
            return classify_sqlstate(state)
    return None


def _builtin(exc: BaseException) -> Classification | None:
    if isinstance(exc, TransientError):
        return _t(type(exc).__name__, retry_after=exc.retry_after, reconnect=exc.reconnect)
    if isinstance(exc, PermanentError):
        return _p(type(exc).__name__)
    if isinstance(exc, (DataError, ConflictError)):
        return _b(type(exc).__name__)
    if isinstance(exc, ServiceNotReady) and exc.__cause__ is not None:
        cause = classify(exc.__cause__)
        if cause.transient:  # "cannot connect": the server is down or restarting
            return cause
    if isinstance(exc, (ConfigError, SchemaError, ServiceNotReady)):
        return _p(type(exc).__name__)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return _t("timeout", reconnect=True)
    if isinstance(exc, (ConnectionError, EOFError, asyncio.IncompleteReadError)):
        return _t(type(exc).__name__, reconnect=True)
    if isinstance(exc, OSError):
        if exc.errno in _OS_TRANSIENT:
            return _t(f"errno {exc.errno}", reconnect=True)
        return _p(f"os {type(exc).__name__}")
    if isinstance(exc, (ValueError, TypeError, ArithmeticError, KeyError,
                        decimal.InvalidOperation)):
        return _b(type(exc).__name__)
    return None


def classify(exc: BaseException) -> Classification:
    """Classify ``exc`` (a :class:`StageError` is classified by its cause).

    Unknown errors are permanent: retrying what we do not understand hides bugs.
    """
    while isinstance(exc, StageError):
        exc = exc.cause
    for rule in (*_custom, _asyncpg, _mysql, _mongo, _sqlite, _sqlstate_attr):
        verdict = rule(exc)
        if verdict is not None:
            return verdict
    http = _http_status(exc)
    if http is not None:
        return classify_http_status(*http)
    verdict = _builtin(exc)
    if verdict is not None:
        return verdict
    return _p(type(exc).__name__)


def describe(exc: BaseException) -> dict[str, Any]:
    """Log-friendly fields for an error: type, message (truncated) and classification."""
    verdict = classify(exc)
    return {"error_type": type(exc).__name__, "error": str(exc)[:500],
            "error_kind": verdict.kind.value, "reason": verdict.reason}
