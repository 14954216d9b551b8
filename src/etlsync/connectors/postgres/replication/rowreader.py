"""Readers of pgoutput TupleData compiled for one relation's columns.

:func:`compile_readers` spells each column's branch and conversion inline (no loop, call or
dispatch per value). Its run reader, which takes a run of Insert messages straight from the
replication stream, also *speculates on row layouts*: rows of a table mostly repeat the
lengths of their values (ids of one magnitude, timestamps, uuids, codes), so a message of a
size seen before is read with one ``struct`` call per row, guarded by a second call that
checks every kind byte and length of that layout. A check that fails reads the row column
by column, exactly as without layouts: the guard makes the fast read exact, never a guess.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from etlsync.connectors.postgres.replication.types import (
    Decoder,
    _bool,
    _numeric,
    _text,
    _timestamp,
    _timestamptz,
)
from etlsync.connectors.postgres.types import UNCHANGED

_I = struct.Struct("!i").unpack_from
_H = struct.Struct("!h").unpack_from
HEAD_AT = struct.Struct("!BIB24x8s").unpack_from
"""A protocol message's ``d``, length, ``w`` and its pgoutput message's first 8 bytes."""
ROW_AT = 38
"""Where an Insert message's TupleData columns start: ``d`` and the length (5), the XLogData
header (25), ``I``, the oid, ``N`` and the column count (8)."""

_INLINE: dict[Any, str] = {
    int: "int({raw})",
    float: "float({raw})",
    _text: "{raw}.decode()",
    _bool: "({raw} == b't')",
    _numeric: "Decimal({raw}.decode())",
    # 'infinity' / '-infinity' end in 'y' (121): those go to the full decoder
    _timestamp: "(fromisoformat({raw}.decode()) if {last} != 121 else d{i}({raw}))",
    _timestamptz: "(fromisoformat({raw}.decode()) if {last} != 121 else d{i}({raw}))",
}
"""Expressions equal to a decoder's call, spelled inline in compiled readers (no Python
frame per value); ``{raw}`` is the value's bytes, ``{last}`` its last byte, ``d{i}`` the
decoder itself."""

MAX_LAYOUTS = 256
"""Layouts kept per relation; when full they are dropped and learnt again (values drift:
ids grow a digit)."""
MAX_NULL_PATTERNS = 64
"""Sets of NULL columns per relation with a compiled conversion; rows with others are read
column by column."""


def _convert(i: int, dec: Decoder, raw: str, last: str) -> str:
    return _INLINE.get(dec, "d{i}({raw})").format(i=i, raw=raw, last=last)


def _column_lines(i: int, dec: Decoder, length: bool = False) -> list[str]:
    """Read column ``i`` at ``pos`` of ``data`` into ``v{i}`` and move ``pos`` past it;
    ``length``: also keep the value's length in ``k{i}`` (-1 for NULL, -2 unchanged)."""
    return [
        "if data[pos] == 116:",
        "    pos += 5",
        "    end = pos + I(data, pos - 4)[0]",
        f"    v{i} = {_convert(i, dec, 'data[pos:end]', 'data[end - 1]')}",
        *([f"    k{i} = end - pos"] if length else []),
        "    pos = end",
        "elif data[pos] == 110:",
        f"    v{i} = None",
        *([f"    k{i} = -1"] if length else []),
        "    pos += 1",
        "elif data[pos] == 117:",
        f"    v{i} = UNCHANGED",
        *([f"    k{i} = -2"] if length else []),
        "    pos += 1",
        "else:",
        "    raise ValueError(data[pos])",
    ]


class Layouts:
    """One relation's learnt row layouts: by message size, a chain of ``(check, expected,
    values, convert, next)`` (rows of one size may split their bytes differently among the
    columns: tried newest first, up to ``PER_SIZE``). Learning is cheap to refuse, so that
    data without repeating layouts costs little more than reading without them:

    - a layout is learnt the second time a row of it is read column by column (one seen
      once may never come back);
    - a size with more layouts than ``PER_SIZE`` is no longer learnt;
    - every ``RESET_AFTER`` rows read column by column, what was refused is forgotten (the
      data may have changed)."""

    PER_SIZE = 4
    RESET_AFTER = 1 << 16
    WINDOW = 1024
    """Rows read column by column after which :meth:`worth_it` weighs the layouts' hits."""
    PAUSE = 256
    """Runs read without layouts after a window where they did not pay."""

    def __init__(self, decoders: list[Decoder], env: dict[str, Any]) -> None:
        self.decoders = decoders
        self.env = env
        self.by_size: dict[int, tuple[Any, ...]] = {}
        self.count = 0
        """Layouts in ``by_size``."""
        self.seen: set[tuple[int, tuple[int, ...]]] = set()
        self.mixed: set[int] = set()
        self.misses = 0
        self.hits = [0]
        """Rows read by a layout in the current window (the speculating run adds its own)."""
        self.window_misses = 0
        self.converters: dict[tuple[bool, ...], Any] = {}

    def worth_it(self) -> bool:
        """After each window: did at least a fifth of its rows come through layouts?"""
        if self.window_misses < self.WINDOW:
            return True
        paid = self.hits[0] * 4 >= self.window_misses
        self.hits[0] = self.window_misses = 0
        return paid

    def learn(self, size: int, lengths: tuple[int, ...]) -> None:
        """Called after a row of message ``size`` was read column by column (no layout of
        its size matched), with its values' lengths (-1: NULL; -2: unchanged TOAST)."""
        self.misses += 1
        self.window_misses += 1
        if self.misses >= self.RESET_AFTER:
            self.misses = 0
            self.seen.clear()
            self.mixed.clear()
        if size in self.mixed or min(lengths) < -1:  # no unchanged TOAST in Inserts
            return
        if (size, lengths) not in self.seen:
            if len(self.seen) >= 8 * MAX_LAYOUTS:
                self.seen.clear()
            self.seen.add((size, lengths))
            return
        chain, depth = self.by_size.get(size), 0
        while chain is not None:
            chain, depth = chain[4], depth + 1
        if depth >= self.PER_SIZE:
            self.mixed.add(size)
            return
        nulls = tuple(n < 0 for n in lengths)
        convert = self.converters.get(nulls)
        if convert is None:
            if len(self.converters) >= MAX_NULL_PATTERNS:
                return
            convert = self.converters[nulls] = self._converter(nulls)
        check, values = f"!{ROW_AT}x", f"!{ROW_AT}x"
        expected: list[int] = []
        for n in lengths:
            if n < 0:
                check += "B"
                values += "x"
                expected.append(110)
            else:
                check += f"Bi{n}x"
                values += f"5x{n}s"
                expected += (116, n)
        if self.count >= MAX_LAYOUTS:
            self.by_size.clear()
            self.count = 0
        self.by_size[size] = (struct.Struct(check).unpack_from, tuple(expected),
                              struct.Struct(values).unpack_from, convert,
                              self.by_size.get(size))
        self.count += 1

    def _converter(self, nulls: tuple[bool, ...]) -> Any:
        """``(raw values) -> record`` for rows whose NULL columns are ``nulls``."""
        out, k = [], 0
        for i, (dec, null) in enumerate(zip(self.decoders, nulls, strict=True)):
            if null:
                out.append("None")
            else:
                out.append(_convert(i, dec, f"r[{k}]", f"r[{k}][-1]"))
                k += 1
        env = dict(self.env)
        exec(f"def convert(r):\n    return ({''.join(x + ', ' for x in out)})", env)
        return env["convert"]


def _head_lines(counter: str) -> list[str]:
    """Read the next message's head; return ``at`` (adding ``counter`` to ``HITS``) unless
    it is a whole Insert of this relation."""
    return ["        d, size, w, head = HEAD_AT(stream, at)",
            "        nxt = at + 1 + size",
            "        if d != 100 or w != 119 or head != HEAD or nxt > stop:",
            *([f"            HITS[0] += {counter}"] if counter else []),
            "            return at"]


def _row_lines(columns: list[str], record: str, after: list[str]) -> list[str]:
    """Read the row column by column from its own ``bytes``, append it, then ``after``."""
    return [f"        data = stream[at + {ROW_AT}:nxt]",
            "        pos = 0",
            *("        " + x for x in columns),
            "        if pos != len(data):",
            "            raise ValueError('row length')",
            f"        append({record})",
            *after,
            "        at = nxt"]


def _plain_run_lines(columns: list[str], record: str) -> list[str]:
    """The run reader without layouts."""
    return ["def run_plain(stream, at, stop, append):",
            f"    while at + {ROW_AT} <= stop:",
            *_head_lines(""),
            *_row_lines(columns, record, []),
            "    return at"]


def compile_readers(oid: int, names: tuple[str, ...], decoders: list[Decoder],
                    warm_up: Callable[..., None]) -> tuple[Any, Any, Any]:
    """Readers of one TupleData of exactly these columns. Any irregularity raises and the
    caller falls back to its careful loop (which names the column).

    Returns the dict reader ``(data, pos) -> (row, pos)``, the record reader (the same, a
    value tuple) and the run reader ``(stream, pos, stop, append) -> pos``: a loop over
    consecutive protocol messages of ``stream[pos:stop]`` that are Inserts of this relation
    (CopyData, XLogData, and the message's first 8 bytes: ``I``, the oid, ``N`` and the
    column count), appending one record each and returning the position of the first
    other (or partial) message. A message of a learnt size is read by its layout if the
    layout's check passes; any other from its own ``bytes`` (small offsets stay cached
    ints), which teaches its layout. When layouts read fewer than a fifth of a window's
    rows, the next ``Layouts.PAUSE`` runs read without them (no learning either)."""
    env: dict[str, Any] = {"I": _I, "H": _H, "UNCHANGED": UNCHANGED, "Decimal": Decimal,
                           "fromisoformat": dt.datetime.fromisoformat, "HEAD_AT": HEAD_AT,
                           "HEAD": b"I" + struct.pack("!IBh", oid, 0x4E, len(names))}
    body: list[str] = []
    timed: list[str] = []
    for i, dec in enumerate(decoders):
        env[f"d{i}"] = dec
        body += _column_lines(i, dec)
        timed += _column_lines(i, dec, length=True)
    layouts = Layouts(decoders, env)
    env.update(LAYOUTS=layouts.by_size, learn=layouts.learn, HITS=layouts.hits)
    items = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(names))
    record = "(" + "".join(f"v{i}, " for i in range(len(names))) + ")"
    lengths = "(" + "".join(f"k{i}, " for i in range(len(names))) + ")"
    head = [f"    if H(data, pos)[0] != {len(names)}:",
            "        raise ValueError('column count')",
            "    pos += 2"]
    lines = ["def read(data, pos):", *head, *("    " + x for x in body),
             f"    return {{{items}}}, pos",
             "def read_record(data, pos):", *head, *("    " + x for x in body),
             f"    return {record}, pos",
             *_plain_run_lines(body, record),
             "def run_spec(stream, at, stop, append):",
             "    layout = LAYOUTS.get",
             "    hits = 0",
             f"    while at + {ROW_AT} <= stop:",
             *_head_lines("hits"),
             "        known = layout(size)",
             "        while known is not None and known[0](stream, at) != known[1]:",
             "            known = known[4]",
             "        if known is not None:",
             "            append(known[3](known[2](stream, at)))",
             "            hits += 1",
             "            at = nxt",
             "            continue",
             *_row_lines(timed, record, [f"        learn(size, {lengths})"]),
             "    HITS[0] += hits",
             "    return at"]
    exec("\n".join(lines), env)
    read, read_record = env["read"], env["read_record"]
    plain: Callable[..., int] = env["run_plain"]
    spec: Callable[..., int] = env["run_spec"]
    paused = [0]

    def run(stream: bytes, at: int, stop: int, append: Callable[[Any], None]) -> int:
        if paused[0]:
            paused[0] -= 1
            return plain(stream, at, stop, append)
        at = spec(stream, at, stop, append)
        if not layouts.worth_it():
            paused[0] = layouts.PAUSE
        return at

    run.layouts = layouts  # type: ignore[attr-defined]  # for tests and diagnostics
    warm_up(plain, b"", 0, 0, None)
    warm_up(spec, b"", 0, 0, None)
    warm_up(read, b"\0\0\0", 0)
    warm_up(read_record, b"\0\0\0", 0)
    return read, read_record, run
