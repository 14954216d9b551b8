"""Per-table row decoders generated as Python source (the hot loop of the binlog reader).

For a TABLE_MAP with every column present and a row without NULLs, a generated function
reads runs of fixed-size columns with one precompiled ``struct`` call, slices
length-prefixed strings inline and builds the row dict in one literal. Rows with NULLs or
partial images use the generic per-column readers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from etlsync.connectors.mysql import values as v

FastRow = Callable[[bytes, int], tuple[dict[str, Any], int]]

_INT_CODES = {v.TINY: "b", v.SHORT: "h", v.LONG: "i", v.LONGLONG: "q"}


def _fixed(t: int, meta: int, unsigned: bool) -> tuple[str, Any] | None:
    """``(struct code, converter or None)`` for fixed-size columns."""
    if t in _INT_CODES:
        code = _INT_CODES[t]
        return (code.upper() if unsigned else code), None
    if t == v.DOUBLE:
        return "d", None
    if t == v.FLOAT:
        return "4s", _conv(v.float_reader(4))
    if t == v.INT24:
        return "3s", (lambda raw: int.from_bytes(raw, "little", signed=not unsigned))
    if t == v.NEWDECIMAL:
        precision, scale = meta >> 8, meta & 0xFF
        return f"{v.decimal_size(precision, scale)}s", v.decimal_converter(precision, scale)
    if t == v.DATETIME2:
        return f"{5 + (meta + 1) // 2}s", v.datetime2_converter(meta)
    if t == v.TIMESTAMP2:
        return f"{4 + (meta + 1) // 2}s", _conv(v.timestamp2_reader(meta))
    if t == v.TIME2:
        return f"{3 + (meta + 1) // 2}s", _conv(v.time2_reader(meta))
    if t in (v.DATE, v.NEWDATE):
        return "3s", _conv(v.FIXED_READERS[v.DATE])
    if t == v.YEAR:
        return "B", (lambda x: 1900 + x if x else 0)
    return None


def _conv(reader: v.Reader) -> Any:
    def conv(raw: bytes) -> Any:
        return reader(raw, 0)[0]
    return conv


def compile_row(names: list[str], types: list[int], meta: list[int], unsigned: list[bool],
                encodings: list[v.TextCodec | None], readers: list[v.Reader],
                special: frozenset[int] = frozenset()) -> FastRow:
    """A decoder for full row images without NULLs: ``(buf, pos) -> (row, new_pos)``.
    Columns in ``special`` are read by their reader (not inlined)."""
    ns: dict[str, Any] = {}
    lines = ["def decode(b, p):"]
    run: list[tuple[int, str, Any]] = []
    out: list[str] = []

    def flush() -> None:
        if not run:
            return
        fmt = "<" + "".join(code for _, code, _ in run)
        s = struct.Struct(fmt)
        k = len(ns)
        ns[f"S{k}"] = s.unpack_from
        targets = ", ".join(f"v{i}" for i, _, _ in run)
        lines.append(f"    {targets}, = S{k}(b, p); p += {s.size}")
        run.clear()

    for i, t in enumerate(types):
        fixed = _fixed(t, meta[i], unsigned[i])
        if fixed is not None:
            code, conv = fixed
            run.append((i, code, conv))
            if conv is not None:
                ns[f"C{i}"] = conv
                out.append(f"{names[i]!r}: C{i}(v{i})")
            else:
                out.append(f"{names[i]!r}: v{i}")
            continue
        flush()
        enc = encodings[i]
        simple_string = t in (v.VARCHAR, v.VAR_STRING, v.BLOB) or (t == v.STRING and enc is not None)
        if simple_string and enc is not None and i not in special:
            width = meta[i] if t == v.BLOB else (1 if meta[i] < 256 else 2)
            ln = "b[p]" if width == 1 else f"int.from_bytes(b[p:p + {width}], 'little')"
            if isinstance(enc, str):
                text = f"b[p:p + n].decode({enc!r}, 'surrogateescape')"
            else:
                ns[f"D{i}"] = enc
                text = f"D{i}(b[p:p + n])"
            lines.append(f"    n = {ln}; p += {width}; v{i} = {text}; p += n")
        else:
            ns[f"R{i}"] = readers[i]
            lines.append(f"    v{i}, p = R{i}(b, p)")
        out.append(f"{names[i]!r}: v{i}")
    flush()
    lines.append("    return {" + ", ".join(out) + "}, p")
    exec("\n".join(lines), ns)
    fn: FastRow = ns["decode"]
    return fn
