"""Connection parameters for the replication connection: DSN or keywords, libpq env, TLS."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from etlsync.core.errors import ConfigError

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(slots=True)
class ConnParams:
    """Where and how to connect. ``password`` is never logged (see :meth:`__repr__`).

    ``sslmode`` follows libpq: ``disable``, ``prefer`` (TLS if the server offers it),
    ``require`` (TLS, no certificate check), ``verify-ca`` / ``verify-full`` (check the
    certificate against ``sslrootcert``, and the host name for ``verify-full``).
    """

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None
    database: str = "postgres"
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    connect_timeout: float = 10.0
    options: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"ConnParams(host={self.host!r}, port={self.port}, user={self.user!r}, "
                f"database={self.database!r}, sslmode={self.sslmode!r})")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context ``sslmode`` asks for, or ``None`` for ``disable``."""
        if self.sslmode == "disable":
            return None
        if self.sslmode in ("verify-ca", "verify-full"):
            ctx = ssl.create_default_context(cafile=self.sslrootcert)
            ctx.check_hostname = self.sslmode == "verify-full"
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.sslcert:
            ctx.load_cert_chain(self.sslcert, self.sslkey)
        return ctx


_KEYS = {"host", "port", "user", "password", "dbname", "database", "sslmode", "sslrootcert",
         "sslcert", "sslkey", "connect_timeout"}


def parse_dsn(dsn: str | None = None, **overrides: object) -> ConnParams:
    """Parse a ``postgresql://`` URI or a ``key=value`` string; libpq environment variables
    (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``, ``PGSSLMODE``, ...)
    fill what the DSN leaves out; keyword ``overrides`` win.

    :raises ConfigError: on an unknown key or an invalid value.
    """
    values: dict[str, str] = {}
    env = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
           "dbname": "PGDATABASE", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
           "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT"}
    for key, var in env.items():
        if os.environ.get(var):
            values[key] = os.environ[var]
    if dsn:
        values.update(_parse(dsn))
    for key, value in overrides.items():
        if value is not None:
            values["dbname" if key == "database" else key] = str(value)
    unknown = set(values) - _KEYS
    if unknown:
        raise ConfigError(f"postgres connection: unknown option(s) {sorted(unknown)}")
    sslmode = values.get("sslmode", "prefer")
    if sslmode not in SSL_MODES:
        raise ConfigError(
            f"postgres connection: sslmode must be one of {SSL_MODES}, got {sslmode!r}")
    try:
        port = int(values.get("port", 5432))
        timeout = float(values.get("connect_timeout", 10))
    except ValueError as exc:
        raise ConfigError(f"postgres connection: invalid port or connect_timeout: {exc}") from None
    user = values.get("user") or os.environ.get("USER") or "postgres"
    return ConnParams(
        host=values.get("host") or "127.0.0.1", port=port, user=user,
        password=values.get("password"), database=values.get("dbname") or user,
        sslmode=sslmode, sslrootcert=values.get("sslrootcert"), sslcert=values.get("sslcert"),
        sslkey=values.get("sslkey"), connect_timeout=timeout,
    )


def _parse(dsn: str) -> dict[str, str]:
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        out: dict[str, str] = {}
        if parts.hostname:
            out["host"] = unquote(parts.hostname)
        if parts.port:
            out["port"] = str(parts.port)
        if parts.username:
            out["user"] = unquote(parts.username)
        if parts.password is not None:
            out["password"] = unquote(parts.password)
        if parts.path and parts.path != "/":
            out["dbname"] = unquote(parts.path.lstrip("/"))
        out.update(parse_qsl(parts.query))
        return out
    out = {}
    for item in dsn.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"postgres connection: expected key=value in DSN, got {item!r}")
        out[key] = value.strip("'")
    return out


def params_from_config(config: object) -> ConnParams:
    """:class:`ConnParams` from a ``PgConnectionConfig`` (the connector's connection settings)
    or a DSN string: the same server, credentials and TLS settings asyncpg uses."""
    if isinstance(config, str) or config is None:
        return parse_dsn(config)
    get = config.__getattribute__
    params = parse_dsn(
        get("dsn"), host=get("host"), port=get("port"), user=get("user"),
        database=get("database"), sslmode=get("sslmode"), sslrootcert=get("sslrootcert"),
        sslcert=get("sslcert"), sslkey=get("sslkey"))
    password = config.password()  # type: ignore[attr-defined]
    if password is not None:
        params.password = password
    return params
