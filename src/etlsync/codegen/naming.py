"""Identifiers for generated code: case styles, reserved words, and collisions refused."""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable

from etlsync.codegen.model import CodegenError, Query

RESERVED: dict[str, set[str]] = {
    "python": set(keyword.kwlist) | {"conn", "row", "rows", "result", "params"},
    "go": {"break", "case", "chan", "const", "continue", "default", "defer", "else",
           "fallthrough", "for", "func", "go", "goto", "if", "import", "interface", "map",
           "package", "range", "return", "select", "struct", "switch", "type", "var", "ctx", "db",
           "row", "rows", "err", "r", "res", "items", "string", "int", "error", "any"},
    "java": {"abstract", "assert", "boolean", "break", "byte", "case", "catch", "char", "class",
             "const", "continue", "default", "do", "double", "else", "enum", "extends", "final",
             "finally", "float", "for", "goto", "if", "implements", "import", "instanceof", "int",
             "interface", "long", "native", "new", "package", "private", "protected", "public",
             "return", "short", "static", "strictfp", "super", "switch", "synchronized", "this",
             "throw", "throws", "transient", "try", "void", "volatile", "while", "true", "false",
             "null", "record", "var", "yield", "conn", "ps", "rs", "out"},
    "node": {"break", "case", "catch", "class", "const", "continue", "debugger", "default",
             "delete", "do", "else", "export", "extends", "finally", "for", "function", "if",
             "import", "in", "instanceof", "new", "return", "super", "switch", "this", "throw",
             "try", "typeof", "var", "void", "while", "with", "yield", "let", "static", "enum",
             "await", "implements", "package", "protected", "interface", "private", "public",
             "null", "true", "false", "db", "args", "res", "rows", "arguments", "eval"},
}
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b|_)|[A-Z]?[a-z]+|[A-Z]+|\d+")
_INITIALISMS = {"id", "url", "uuid", "json", "sql", "http", "api", "ip", "uri", "html"}


def words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name)] or ["x"]


def snake(name: str) -> str:
    out = "_".join(words(name))
    return f"_{out}" if out[0].isdigit() else out


def camel(name: str) -> str:
    w = words(name)
    out = w[0] + "".join(x.capitalize() for x in w[1:])
    return f"_{out}" if out[0].isdigit() else out


def pascal(name: str, go: bool = False) -> str:
    out = "".join(x.upper() if go and x in _INITIALISMS else x.capitalize() for x in words(name))
    return f"X{out}" if out[0].isdigit() else out


def unique(q: Query | None, names: Iterable[tuple[str, str]], convert: Callable[[str], str],
           lang: str, what: str, reserved_ok: bool = False) -> list[str]:
    """Convert every ``(label, name)``; refuse two that end up the same identifier.

    :raises CodegenError: a collision (both names given) or a reserved word.
    """
    seen: dict[str, str] = {}
    out = []
    for label, name in names:
        ident = convert(name)
        if not reserved_ok and ident in RESERVED[lang]:
            ident = ident + "_"
        key = ident.lower() if lang == "python" else ident
        if key in seen:
            message = (f"{what} {seen[key]!r} and {label!r} both become {ident!r} in {lang}: "
                       "rename one")
            raise q.error(message) if q is not None else CodegenError(message)
        seen[key] = label
        out.append(ident)
    return out


def check_queries(queries: list[Query], lang: str, convert: Callable[[str], str]) -> list[str]:
    """Function names of all queries (refusing collisions); also checks each query's
    parameters and result columns."""
    names = unique(None, [(q.name, q.name) for q in queries], convert, lang, "queries")
    return names
