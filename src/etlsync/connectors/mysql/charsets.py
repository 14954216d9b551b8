"""Character sets of binlog values, decoded as the server itself converts them to Unicode.

A binlog row holds a text column's bytes in the column's own character set; a SELECT over
a ``utf8mb4`` connection gets the server's conversion of them. Python's codecs differ from
MariaDB's tables in many character sets (MariaDB's ``latin1`` maps 0x81 to U+0081 where
``cp1252`` has no character; ``euckr`` includes the cp949 extension; ``ujis`` the user
defined area; ``eucjpms`` has no Python codec at all, ...), so the tables come from the
server: for a single-byte character set its conversion of all 256 bytes (decoded with a
``charmap`` table), for a multi-byte one its conversion of every one-, two- and (EUC-JP)
three-byte sequence. A multi-byte value is decoded by the Python codec that agrees best with
the server's table, unless it contains a character where they differ (then by the table).
A character the server cannot convert becomes ``?``, as in a SELECT. Unicode character sets use
Python's codecs (``ucs2``/``utf16`` big-endian, ``utf16le``, ``utf32``).
"""

from __future__ import annotations

import codecs
import json
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from pymysql.charset import charset_by_id

from etlsync.connectors.mysql.values import TextCodec
from etlsync.log import get_logger

UNICODE: dict[str, str] = {"utf8mb4": "utf-8", "utf8mb3": "utf-8", "utf8": "utf-8",
                           "ucs2": "utf-16-be", "utf16": "utf-16-be", "utf16le": "utf-16-le",
                           "utf32": "utf-32-be"}
CANDIDATES: dict[str, tuple[str, ...]] = {
    "big5": ("big5", "cp950", "big5hkscs"), "cp932": ("cp932",), "eucjpms": ("euc_jp",),
    "euckr": ("cp949", "euc_kr"), "gb2312": ("gb2312", "gbk"), "gbk": ("gbk", "cp936"),
    "sjis": ("shift_jis", "cp932"), "ujis": ("euc_jp", "euc_jis_2004"),
    "latin2": ("iso8859_2",), "greek": ("iso8859_7",), "hebrew": ("iso8859_8",),
    "latin5": ("iso8859_9",), "latin7": ("iso8859_13",), "koi8r": ("koi8_r",),
    "koi8u": ("koi8_u",), "macce": ("mac_latin2",), "macroman": ("mac_roman",),
    "tis620": ("tis_620",), "ascii": ("ascii",), "cp1250": ("cp1250",), "cp1251": ("cp1251",),
    "cp1256": ("cp1256",), "cp1257": ("cp1257",), "cp850": ("cp850",), "cp852": ("cp852",),
    "cp866": ("cp866",),
}
"""Python codecs close to each character set (the first is used without the server)."""


def _latin1_table() -> str:
    """MariaDB's ``latin1``: cp1252, with the five bytes cp1252 leaves undefined mapped to
    the C1 controls of the same number (the server's table, used without a server)."""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in range(256))


def charmap(table: str) -> Callable[[bytes], str]:
    """A decoder of a single-byte character set from its 256 characters."""
    decode = codecs.charmap_decode

    def dec(raw: bytes) -> str:
        return decode(raw, "strict", table)[0]
    return dec


def multibyte(table: dict[bytes, str], codec: str | None, differ: frozenset[str]
              ) -> Callable[[bytes], str]:
    """A decoder of a multi-byte character set from the server's ``table`` of sequences:
    the Python ``codec`` where its result holds no character of ``differ`` (what it gives
    for sequences the server converts otherwise), else the table itself."""
    longest = max(map(len, table))

    def slow(raw: bytes) -> str:
        out, i, n = [], 0, len(raw)
        get = table.get
        while i < n:
            for size in range(1, longest + 1):
                ch = get(raw[i:i + size])
                if ch is not None:
                    out.append(ch)
                    i += size
                    break
            else:
                out.append("?")
                i += 1
        return "".join(out)

    if codec is None:
        return slow

    def dec(raw: bytes) -> str:
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            return slow(raw)
        return text if not differ or differ.isdisjoint(text) else slow(raw)
    return dec


def _sequences(maxlen: int) -> list[bytes]:
    """Every sequence a multi-byte character set of up to ``maxlen`` bytes may use: each
    byte, each two bytes led by a byte >= 0x80, and EUC-JP's three-byte 0x8F sequences."""
    out = [bytes([b]) for b in range(256)]
    out += [bytes([a, b]) for a in range(0x80, 0x100) for b in range(256)]
    if maxlen >= 3:
        out += [bytes([0x8F, a, b]) for a in range(0xA1, 0xFF) for b in range(0xA1, 0xFF)]
    return out


class Charsets:
    """Collation ids and character sets of one server, and their decoders. Without a
    server (:meth:`load` never called) it knows PyMySQL's collations and Python's codecs."""

    _servers: dict[Any, Charsets] = {}

    def __init__(self) -> None:
        self.collations: dict[int, str] = {}
        self.maxlen: dict[str, int] = {}
        self.codecs: dict[str, TextCodec] = {"latin1": charmap(_latin1_table())}
        self.loaded: set[str] = set()
        self.failed: dict[str, str] = {}
        self.log = get_logger(component="mysql-charsets")

    @classmethod
    def for_server(cls, key: Any) -> Charsets:
        """The shared registry of the server ``key`` (tables are loaded once per process)."""
        found = cls._servers.get(key)
        if found is None:
            found = cls._servers[key] = cls()
        return found

    def charset(self, collation: int | None) -> str | None:
        """The character set of a collation id (``None``: binary)."""
        if collation is None:
            return "utf8mb4"
        if collation == 63:
            return None
        name = self.collations.get(collation)
        if name is None:
            try:
                name = charset_by_id(collation).name
            except KeyError:
                name = f"collation:{collation}"
        return name

    def codec(self, charset: str | None) -> TextCodec | None:
        """How to decode ``charset`` (``None``: binary, bytes stay bytes).

        :raises LookupError: a character set neither the server's tables nor Python decode.
        """
        if charset is None or charset == "binary":
            return None
        if charset in UNICODE:
            return UNICODE[charset]
        known = self.codecs.get(charset)
        if known is not None:
            return known
        candidates = CANDIDATES.get(charset, ())
        if candidates:
            return candidates[0]
        reason = self.failed.get(charset, "the server's conversion table was not loaded")
        raise LookupError(f"character set {charset!r} has no decoder ({reason})")

    def missing(self, charsets: Iterable[str | None]) -> list[str]:
        """Character sets of ``charsets`` whose server tables are still to be loaded."""
        return sorted({c for c in charsets if c is not None and c not in UNICODE
                       and c != "binary" and c not in self.loaded and c not in self.failed})

    async def load_collations(self, cur: Any) -> None:
        """Read the server's collation ids and character sets (once)."""
        if self.collations:
            return
        await cur.execute("SELECT CHARACTER_SET_NAME, MAXLEN FROM "
                          "information_schema.CHARACTER_SETS")
        self.maxlen = {r[0]: int(r[1]) for r in await cur.fetchall()}
        await cur.execute("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS")
        rows = list(await cur.fetchall())
        try:  # MariaDB 10.10+: collations of every character set, with their own ids
            await cur.execute("SELECT ID, CHARACTER_SET_NAME FROM "
                              "information_schema.COLLATION_CHARACTER_SET_APPLICABILITY")
            rows += list(await cur.fetchall())
        except Exception:  # noqa: BLE001 - MySQL and older MariaDB: COLLATIONS has them all
            pass
        self.collations = {int(r[0]): r[1] for r in rows if r[0] is not None}

    async def load(self, cur: Any, charsets: Iterable[str]) -> None:
        """Load the server's conversion tables of ``charsets``; a table that cannot be read
        leaves the character set to Python's closest codec, with a warning."""
        await self.load_collations(cur)
        for charset in charsets:
            try:
                with warnings.catch_warnings():  # the server warns of each invalid sequence
                    warnings.simplefilter("ignore")
                    if self.maxlen.get(charset, 1) == 1:
                        self.codecs[charset] = await self._single(cur, charset)
                    else:
                        self.codecs[charset] = await self._multi(cur, charset)
                self.loaded.add(charset)
            except Exception as exc:  # noqa: BLE001 - falls back, and says so
                self.failed[charset] = str(exc)
                self.log.warning("cannot read the server's table of a character set: values "
                                 "are decoded by Python's codec, which may differ",
                                 charset=charset, error=str(exc),
                                 codec=(CANDIDATES.get(charset) or ("none",))[0])

    async def _single(self, cur: Any, charset: str) -> TextCodec:
        await cur.execute(f"SELECT CONVERT(CAST(UNHEX('{bytes(range(256)).hex()}') AS CHAR "
                          f"CHARACTER SET {charset}) USING utf8mb4)")
        table = (await cur.fetchone())[0]
        if not isinstance(table, str) or len(table) != 256:
            raise ValueError(f"the conversion of 256 bytes gave {len(table or '')} characters")
        return charmap(table)

    async def _multi(self, cur: Any, charset: str) -> TextCodec:
        seqs = _sequences(self.maxlen.get(charset, 2))
        cast = f"CAST(UNHEX(h) AS CHAR CHARACTER SET {charset})"
        await cur.execute(
            f"SELECT h, CHAR_LENGTH({cast}), HEX(CONVERT({cast} USING utf8mb4)) FROM "
            "JSON_TABLE(%s, '$[*]' COLUMNS (h VARCHAR(8) PATH '$')) AS seq",
            (json.dumps([s.hex() for s in seqs]),))
        table: dict[bytes, str] = {}
        for h, chars, out in await cur.fetchall():
            raw, text = bytes.fromhex(h), bytes.fromhex(out or "").decode("utf-8", "replace")
            if len(text) != 1:
                continue
            if len(raw) == 1 and text == "?" and raw != b"?":
                continue  # a lead byte alone (or a byte the set lacks): '?' either way
            if len(raw) == 1 or chars == 1:  # one well-formed character ('?': no Unicode)
                table[raw] = text
        best, differ = None, frozenset[str]()
        fewest = len(table) + 1
        for codec in CANDIDATES.get(charset, ()):
            wrong: set[str] = set()
            errors = 0
            for raw, text in table.items():
                try:
                    mine = raw.decode(codec)
                except UnicodeDecodeError:
                    errors += 1
                    continue
                if mine != text:
                    wrong.update(mine)
            if len(wrong) + errors < fewest:
                best, differ, fewest = codec, frozenset(wrong), len(wrong) + errors
        return multibyte(table, best, differ)
