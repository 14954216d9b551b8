"""``${VAR}`` substitution from the environment, and masking of the substituted values.

Every string in a job may use ``${VAR}`` (an error when ``VAR`` is unset) or
``${VAR:-default}``; ``$${`` writes a literal ``${``. Substitution runs on the parsed YAML
values, so a value can never change the structure of the job. The values that came from the
environment are treated as secrets: :class:`Redactor` masks them in anything printed or logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from etlsync.core.errors import ConfigError

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BAD_REF = re.compile(r"(?<!\$)\$\{(?![A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})")
MASK = "***"


class Redactor:
    """Replaces known secret values with ``***`` in text. Values shorter than 3 characters
    are not masked (masking ``1`` everywhere would hide more than it protects)."""

    def __init__(self, secrets: set[str] | None = None) -> None:
        self.secrets: set[str] = set()
        for s in secrets or ():
            self.add(s)

    def add(self, secret: str) -> None:
        if len(secret) >= 3:
            self.secrets.add(secret)

    def __call__(self, text: str) -> str:
        for s in sorted(self.secrets, key=len, reverse=True):
            if s in text:
                text = text.replace(s, MASK)
        return text

    def structlog_processor(self, logger: Any, method: str,
                            event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        """A structlog processor masking secrets in every string value of an event."""
        if not self.secrets:
            return event
        return {k: self(v) if isinstance(v, str) else
                (self(repr(v)) if not isinstance(v, int | float | bool | type(None)) else v)
                for k, v in event.items()}


def substitute(value: Any, env: Mapping[str, str], path: str, secrets: set[str]) -> Any:
    """``value`` with every ``${VAR}`` in its strings replaced from ``env``.

    Substituted values are added to ``secrets``.

    :raises ConfigError: naming the key path and the variable when ``VAR`` is unset.
    """
    if isinstance(value, str):
        return _sub_str(value, env, path, secrets)
    if isinstance(value, dict):
        return {k: substitute(v, env, _join(path, k), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, env, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _sub_str(text: str, env: Mapping[str, str], path: str, secrets: set[str]) -> str:
    if "$" not in text:
        return text
    bad = _BAD_REF.search(text)
    if bad is not None:
        raise ConfigError(f"{path}: malformed variable reference at character {bad.start() + 1} "
                          "(expected ${NAME} or ${NAME:-default}; write $${ for a literal ${)")

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in env:
            val = env[name]
            secrets.add(val)
            return val
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set "
                          f"(set it, or write ${{{name}:-default}})")

    return _REF.sub(repl, text)
