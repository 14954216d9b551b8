"""Connection settings for PostgreSQL: a DSN or host/port/user/database, a password from an
environment variable or a secret file, and TLS options. Secrets never appear in ``repr``
or logs."""

from __future__ import annotations

import os
import ssl as ssl_module
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg

from etlsync.core.errors import ConfigError

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_PASSWORD_ENV = "PGPASSWORD"


@dataclass(frozen=True)
class PgConnectionConfig:
    """How to reach a PostgreSQL server.

    :param dsn: a libpq URI (``postgresql://user@host:5432/db?sslmode=require``). Parts given
        as keyword arguments override it. Avoid putting the password in it; use
        ``password_env`` or ``password_file``.
    :param password_env: name of an environment variable holding the password
        (default ``PGPASSWORD`` when set).
    :param password_file: a file whose first line is the password (e.g. a mounted secret).
    :param sslmode: one of ``disable, allow, prefer, require, verify-ca, verify-full``.
    :param sslrootcert: CA bundle to verify the server (``verify-ca``/``verify-full``).
    :param sslcert: client certificate; ``sslkey``: its private key.
    :param application_name: shown in ``pg_stat_activity``.
    """

    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    database: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    application_name: str = "etlsync"
    connect_timeout: float = 30.0
    server_settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sslmode is not None and self.sslmode not in SSL_MODES:
            raise ConfigError(f"sslmode must be one of {', '.join(SSL_MODES)}, "
                              f"not {self.sslmode!r}")
        if self.dsn is not None and not self.dsn.startswith(("postgres://", "postgresql://")):
            raise ConfigError("dsn must be a postgresql:// URI")

    @classmethod
    def coerce(cls, value: PgConnectionConfig | str | Mapping[str, Any] | None = None,
               **kwargs: Any) -> PgConnectionConfig:
        """A config from a DSN string, an existing config, a mapping of its fields, or
        keyword arguments (which override the parts of ``value``)."""
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if isinstance(value, PgConnectionConfig):
            return replace(value, **kwargs) if kwargs else value
        if isinstance(value, Mapping):
            fields = {k: v for k, v in value.items() if v is not None}
            unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
            if unknown:
                raise ConfigError(f"unknown PostgreSQL connection field(s): {', '.join(unknown)}")
            return cls(**{**fields, **kwargs})
        return cls(dsn=value, **kwargs)

    def __repr__(self) -> str:
        return (f"PgConnectionConfig(host={self.effective_host()!r}, port={self.port!r}, "
                f"user={self.user!r}, database={self.database!r}, sslmode={self.sslmode!r})")

    __str__ = __repr__

    def effective_host(self) -> str | None:
        if self.host:
            return self.host
        if self.dsn:
            return urlsplit(self.dsn).hostname
        return None

    def identity(self) -> tuple[str, int, str]:
        """``(host, port, database)``: which database this config points at (no secrets)."""
        parts = urlsplit(self.dsn) if self.dsn else None
        host = self.effective_host() or "localhost"
        port = self.port or (parts.port if parts else None) or 5432
        database = self.database or (parts.path.lstrip("/") if parts else "") or (
            self.user or (parts.username if parts else None) or "")
        return host, int(port), database

    def _dsn_query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.dsn).query)) if self.dsn else {}

    def password(self) -> str | None:
        """The password from ``password_file``, else ``password_env`` (else ``PGPASSWORD``)."""
        if self.password_file:
            try:
                return Path(self.password_file).read_text().splitlines()[0].strip()
            except (OSError, IndexError) as exc:
                raise ConfigError(f"cannot read password_file {self.password_file!r}: "
                                  f"{type(exc).__name__}") from None
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"environment variable {self.password_env!r} is not set")
            return value
        return os.environ.get(DEFAULT_PASSWORD_ENV)

    def ssl_context(self) -> ssl_module.SSLContext | str | None:
        """What asyncpg's ``ssl=`` argument gets: an SSLContext when certificates are
        configured, a libpq mode name otherwise, ``None`` for the DSN's own setting."""
        query = self._dsn_query()
        mode = self.sslmode or query.get("sslmode")
        rootcert = self.sslrootcert or query.get("sslrootcert")
        cert = self.sslcert or query.get("sslcert")
        key = self.sslkey or query.get("sslkey")
        if mode is None and not (rootcert or cert):
            return None
        mode = mode or "verify-full"
        if mode in ("disable", "allow", "prefer") and not cert:
            return mode
        if not (rootcert or cert) and mode == "require":
            return mode
        ctx = ssl_module.create_default_context(cafile=rootcert) if rootcert else (
            ssl_module.create_default_context())
        if mode in ("require", "prefer", "allow") and not rootcert:
            ctx.check_hostname = False
            ctx.verify_mode = ssl_module.CERT_NONE
        elif mode == "verify-ca":
            ctx.check_hostname = False
        if cert:
            ctx.load_cert_chain(cert, keyfile=key)
        return ctx

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`asyncpg.connect` / :func:`asyncpg.create_pool`."""
        dsn = self.dsn
        if dsn and urlsplit(dsn).query:
            # ssl options are applied through ``ssl=``; strip them so asyncpg does not
            # try to open certificate paths itself.
            parts = urlsplit(dsn)
            rest = [(k, v) for k, v in parse_qsl(parts.query)
                    if k not in ("sslmode", "sslrootcert", "sslcert", "sslkey")]
            query = "&".join(f"{k}={v}" for k, v in rest)
            dsn = parts._replace(query=query).geturl()
        kw: dict[str, Any] = {"dsn": dsn, "timeout": self.connect_timeout,
                              "server_settings": {"application_name": self.application_name,
                                                  **self.server_settings}}
        for name in ("host", "port", "user", "database"):
            value = getattr(self, name)
            if value is not None:
                kw[name] = value
        password = self.password()
        if password is not None:
            kw["password"] = password
        ssl = self.ssl_context()
        if ssl is not None:
            kw["ssl"] = ssl
        return kw

    async def connect(self) -> asyncpg.Connection:
        """Open one connection."""
        return await asyncpg.connect(**self.connect_kwargs())

    async def create_pool(self, size: int) -> asyncpg.Pool:
        """Open a pool of at most ``size`` connections."""
        kw = self.connect_kwargs()
        kw.pop("timeout", None)
        pool = await asyncpg.create_pool(min_size=1, max_size=max(1, size),
                                         timeout=self.connect_timeout, **kw)
        assert pool is not None
        return pool


def quote_ident(name: str) -> str:
    """Quote one SQL identifier (embedded double quotes doubled; NUL rejected)."""
    if "\x00" in name:
        raise ConfigError(f"identifier contains a NUL byte: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str | None, table: str) -> str:
    """``"schema"."table"``, quoted."""
    return f"{quote_ident(schema)}.{quote_ident(table)}" if schema else quote_ident(table)
