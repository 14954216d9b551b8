"""Connection options shared by the MongoDB stages: URI from argument, env var or secret
file, TLS options, and one ``AsyncMongoClient`` factory. Credentials are never logged."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etlsync.core.errors import ConfigError

DEFAULT_URI_ENV = "ETLSYNC_MONGO_URI"


def redact(uri: str) -> str:
    """The URI with any password replaced by ``***`` (for logs and errors)."""
    return re.sub(r"(mongodb(?:\+srv)?://[^:/@]+):[^@]*@", r"\1:***@", uri)


@dataclass
class MongoConnection:
    """Where and how to connect.

    :param uri: a MongoDB URI; when omitted it is read from ``uri_file`` (a secret file,
        e.g. a mounted Kubernetes secret), then from the env var ``uri_env``.
    :param tls: force TLS on (``True``) or off (``False``); ``None`` keeps the URI's setting.
    :param tls_ca_file: CA bundle to verify the server certificate.
    :param tls_certificate_key_file: client certificate and key (PEM) for mutual TLS.
    :param tls_certificate_key_file_password: password of that key, if encrypted.
    :param tls_allow_invalid_hostnames: skip hostname verification (tests only).
    :param direct_connection: talk to the one host given (no replica-set discovery).
    :param options: any further ``AsyncMongoClient`` keyword arguments.
    """

    uri: str | None = None
    uri_env: str = DEFAULT_URI_ENV
    uri_file: str | None = None
    tls: bool | None = None
    tls_ca_file: str | None = None
    tls_certificate_key_file: str | None = None
    tls_certificate_key_file_password: str | None = field(default=None, repr=False)
    tls_allow_invalid_hostnames: bool = False
    direct_connection: bool | None = None
    app_name: str = "etlsync"
    options: dict[str, Any] = field(default_factory=dict)

    def resolve_uri(self) -> str:
        """The URI to use. :raises ConfigError: when none is configured."""
        if self.uri:
            return self.uri
        if self.uri_file:
            try:
                return Path(self.uri_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read MongoDB URI file {self.uri_file!r}: {exc}") from exc
        value = os.environ.get(self.uri_env)
        if value:
            return value
        raise ConfigError(
            f"no MongoDB URI: pass uri=, uri_file= or set the environment variable {self.uri_env}"
        )

    def client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"appname": self.app_name, "uuidRepresentation": "standard"}
        if self.tls is not None:
            kw["tls"] = self.tls
        if self.tls_ca_file:
            kw["tlsCAFile"] = self.tls_ca_file
        if self.tls_certificate_key_file:
            kw["tlsCertificateKeyFile"] = self.tls_certificate_key_file
        if self.tls_certificate_key_file_password:
            kw["tlsCertificateKeyFilePassword"] = self.tls_certificate_key_file_password
        if self.tls_allow_invalid_hostnames:
            kw["tlsAllowInvalidHostnames"] = True
        if self.direct_connection is not None:
            kw["directConnection"] = self.direct_connection
        kw.update(self.options)
        return kw

    def client(self) -> Any:
        """A new ``pymongo.AsyncMongoClient`` (close it with ``await client.close()``)."""
        from pymongo import AsyncMongoClient

        return AsyncMongoClient(self.resolve_uri(), **self.client_kwargs())

    def describe(self) -> str:
        """The URI without its password, for logs."""
        try:
            return redact(self.resolve_uri())
        except ConfigError:
            return "<unconfigured>"


def as_connection(value: MongoConnection | str | Mapping[str, Any] | None,
                  **kw: Any) -> MongoConnection:
    """Accept a :class:`MongoConnection`, a URI string, a mapping of its fields, or ``None``
    (URI from env/file)."""
    if isinstance(value, MongoConnection):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(MongoConnection.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown MongoDB connection field(s): {', '.join(unknown)}")
        return MongoConnection(**{**value, **kw})
    return MongoConnection(uri=value, **kw)
