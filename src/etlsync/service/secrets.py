"""Secrets for the service (the HTTP token, webhook URLs, SMTP passwords): from an
environment variable or a secret file, never from the project file itself."""

from __future__ import annotations

import os
from pathlib import Path

from etlsync.core.errors import ConfigError


def secret(env: str | None, file: str | None, where: str, base: str | Path = ".") -> str:
    """The value of environment variable ``env``, else the first line of ``file`` (relative
    to ``base``)."""
    if env:
        value = os.environ.get(env)
        if value:
            return value
        if not file:
            raise ConfigError(f"{where}: environment variable {env} is not set")
    if file:
        p = Path(file).expanduser()
        p = p if p.is_absolute() else Path(base) / p
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read secret file {p}: {exc.strerror}") from None
        if not lines or not lines[0].strip():
            raise ConfigError(f"{where}: secret file {p} is empty")
        return lines[0].strip()
    raise ConfigError(f"{where}: no secret given (an environment variable or a file)")
