"""Secrets of HTTP connectors: resolved from the environment or files, masked everywhere.

Every resolved secret is registered with :data:`REDACTOR`; the connectors pass every error
message and log field through :func:`mask` so a token never reaches a log, an exception or a
dry-run plan.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from etlsync.connectors.http.config import SecretRef
from etlsync.core.errors import ConfigError
from etlsync.jobs.env import Redactor

REDACTOR = Redactor()
"""Every secret an HTTP connector resolved in this process."""

_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:api_key|apikey|key|token|access_token|client_secret|password|signature|sig)=)"
    r"[^&#\s]*")


def resolve_secret(value: str | SecretRef | dict[str, Any] | None, where: str) -> str | None:
    """The secret's text. ``{env: NAME}`` reads the environment, ``{file: path}`` a file.

    :raises ConfigError: naming ``where`` and the variable or file (never the value).
    """
    if value is None:
        return None
    if isinstance(value, dict):
        value = SecretRef(env=value.get("env"), file=value.get("file"))
    if isinstance(value, SecretRef):
        if value.env:
            found = os.environ.get(value.env)
            if found is None:
                raise ConfigError(f"{where}: environment variable {value.env} is not set")
            text = found
        elif value.file:
            path = Path(value.file).expanduser()
            try:
                text = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read secret file {str(path)!r}: "
                                  f"{exc.strerror}") from None
        else:
            raise ConfigError(f"{where}: a secret needs env: NAME or file: path")
    else:
        text = value
    REDACTOR.add(text)
    return text


def mask(text: str) -> str:
    """``text`` with every known secret and every secret-looking query parameter masked."""
    return _QUERY_SECRET.sub(r"\1***", REDACTOR(text))
