"""Quoting SQL identifiers: the one implementation every SQL connector uses."""

from __future__ import annotations

from etlsync.core.errors import ConfigError


def quote_identifier(name: str, quote: str = '"') -> str:
    """``name`` as a delimited identifier: wrapped in ``quote`` with embedded quote
    characters doubled (``"`` for PostgreSQL and SQLite, a backtick for MySQL).

    :raises ConfigError: for an empty name or one containing a NUL byte (no server accepts
        them, and a NUL would end the statement early in C drivers).
    """
    if not isinstance(name, str) or name == "":
        raise ConfigError(f"an SQL identifier must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise ConfigError(f"SQL identifier contains a NUL byte: {name!r}")
    return quote + name.replace(quote, quote + quote) + quote


def qualified_name(*parts: str | None, quote: str = '"') -> str:
    """Dotted, quoted name of the non-empty ``parts`` (``"schema"."table"``)."""
    return ".".join(quote_identifier(p, quote) for p in parts if p)
