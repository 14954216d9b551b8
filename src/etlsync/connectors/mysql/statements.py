"""Statements in binlog QUERY events: which of them change rows, and of which tables.

A QUERY event holds a statement when the server logs the statement itself: DDL, TRUNCATE
(always), and data changes made by a session whose ``binlog_format`` is STATEMENT (or
MIXED, for statements it deems safe). Row-based CDC cannot see the rows such a statement
changed, so the reader must know which tables it names. :func:`classify` tokenises the
statement (comments, quoted names, strings, MariaDB's executable comments) and reports
every table name it mentions: conservative (a table read in a subquery counts too), never
one missed by its spelling.
"""

from __future__ import annotations

from itertools import pairwise

DML = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD"})
PARTITION_CHANGES = frozenset({"TRUNCATE", "DROP", "EXCHANGE"})
"""``ALTER TABLE ... TRUNCATE / DROP / EXCHANGE PARTITION``: rows change, no row events."""
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
Table = tuple[str, str]


def _skip_space(sql: str, i: int) -> int:
    """Past whitespace and comments (not executable comments: their text is code)."""
    n = len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("/*", i) and not sql.startswith(("/*!", "/*M!"), i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == "#" or (sql.startswith("--", i) and (i + 2 >= n or sql[i + 2].isspace())):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        else:
            return i
    return i


def _quoted(sql: str, i: int, quote: str) -> tuple[str, int]:
    """The text of a quoted token at ``i`` (doubled quotes; backslash escapes in strings)."""
    out, i, n = [], i + 1, len(sql)
    while i < n:
        c = sql[i]
        if c == "\\" and quote != "`" and i + 1 < n:
            out.append(sql[i + 1])
            i += 2
        elif c == quote and sql.startswith(quote * 2, i):
            out.append(quote)
            i += 2
        elif c == quote:
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    return "".join(out), n


def tokens(sql: str) -> list[tuple[str, str]]:
    """``(kind, text)``: ``word`` (a keyword or bare name), ``name`` (backquoted, or
    double-quoted: a name under ANSI_QUOTES), ``str``, or a symbol (``.``, ``,``, ...)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(sql)
    while True:
        i = _skip_space(sql, i)
        if i >= n:
            return out
        c = sql[i]
        if sql.startswith(("/*!", "/*M!"), i):  # executable comment: /*!50001 code */
            i += 4 if sql[i + 2] == "M" else 3
            while i < n and sql[i].isdigit():
                i += 1
        elif sql.startswith("*/", i):
            i += 2
        elif c in "`\"":
            text, i = _quoted(sql, i, c)
            out.append(("name", text))
        elif c == "'":
            text, i = _quoted(sql, i, c)
            out.append(("str", text))
        elif c in _WORD or ord(c) > 127:
            start = i
            while i < n and (sql[i] in _WORD or ord(sql[i]) > 127):
                i += 1
            out.append(("word", sql[start:i]))
        else:
            out.append((c, c))
            i += 1


def _names(toks: list[tuple[str, str]], default: str) -> set[Table]:
    """Every ``(schema, table)`` the tokens may name: each name alone (in ``default``),
    and each pair of a dotted chain (``db.t``, also ``t.col`` of ``db.t.col``)."""
    out: set[Table] = set()
    chain: list[str] = []

    def close() -> None:
        for k, name in enumerate(chain):
            out.add((default, name))
            if k:
                out.add((chain[k - 1], name))
        chain.clear()

    expect_name = True
    for kind, text in toks:
        if kind in ("word", "name") and expect_name:
            chain.append(text)
            expect_name = False
        elif kind == "." and chain:
            expect_name = True
        else:
            close()
            expect_name = True
            if kind in ("word", "name"):
                chain.append(text)
                expect_name = False
    close()
    return out


def first_word(sql: str) -> str:
    """The statement's first keyword, upper case (``""`` if none)."""
    i = _skip_space(sql, 0)
    if sql.startswith(("/*!", "/*M!"), i):
        toks = tokens(sql[i:i + 200])
        return toks[0][1].upper() if toks and toks[0][0] == "word" else ""
    start = i
    while i < len(sql) and sql[i] in _WORD:
        i += 1
    return sql[start:i].upper()


def classify(sql: str, default: str) -> tuple[str, set[Table]]:
    """``("dml", tables it names)`` for a data change (partition truncates, drops and
    exchanges too), ``("truncate", {table})``, or ``("other", set())`` (DDL, transaction
    control, ...)."""
    word = first_word(sql)
    if word == "TRUNCATE":
        toks = tokens(sql)[1:]
        if toks and toks[0][0] == "word" and toks[0][1].upper() == "TABLE":
            toks = toks[1:]
        names = [t for k, t in toks[:3] if k in ("word", "name")]
        if len(toks) >= 3 and toks[1][0] == ".":
            return "truncate", {(names[0], names[1])}
        return ("truncate", {(default, names[0])}) if names else ("other", set())
    if word in DML or (word == "WITH" and any(
            k == "word" and t.upper() in DML for k, t in tokens(sql))):
        return "dml", _names(tokens(sql), default)
    if word == "ALTER":
        toks = tokens(sql)
        words = [t.upper() if k == "word" else "" for k, t in toks]
        if any(w in PARTITION_CHANGES and nxt == "PARTITION"
               for w, nxt in pairwise(words)):
            return "dml", _names(toks, default)
    return "other", set()
