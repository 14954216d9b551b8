"""GTID positions: MariaDB ``domain-server-seq`` lists and MySQL ``uuid:interval`` sets."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

from etlsync.core.errors import ConfigError


@dataclass(slots=True)
class MariaGtidPos:
    """The last GTID committed per replication domain (MariaDB ``gtid_slave_pos`` form)."""

    domains: dict[int, tuple[int, int]] = field(default_factory=dict)
    """domain id -> (server id, sequence number)."""

    @classmethod
    def parse(cls, text: str | None) -> MariaGtidPos:
        pos = cls()
        for part in (text or "").replace(" ", "").split(","):
            if not part:
                continue
            try:
                d, s, n = (int(x) for x in part.split("-"))
            except ValueError as exc:
                raise ConfigError(f"invalid MariaDB GTID {part!r} (expected domain-server-seq)") from exc
            pos.domains[d] = (s, n)
        return pos

    def advance(self, domain: int, server: int, seq: int) -> None:
        self.domains[domain] = (server, seq)

    def copy(self) -> MariaGtidPos:
        return MariaGtidPos(dict(self.domains))

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.domains.items()))


@dataclass(slots=True)
class MysqlGtidSet:
    """A MySQL GTID set: server UUID -> sorted, merged half-open intervals ``[start, end)``."""

    sets: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> MysqlGtidSet:
        out = cls()
        for part in (text or "").replace("\n", "").replace(" ", "").split(","):
            if not part:
                continue
            sid, *ranges = part.split(":")
            try:
                key = str(uuid.UUID(sid))
                for r in ranges:
                    a, _, b = r.partition("-")
                    out._add_range(key, int(a), int(b or a) + 1)
            except ValueError as exc:
                raise ConfigError(f"invalid MySQL GTID set element {part!r}") from exc
        return out

    def _add_range(self, sid: str, start: int, end: int) -> None:
        merged: list[tuple[int, int]] = []
        for a, b in sorted([*self.sets.get(sid, []), (start, end)]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        self.sets[sid] = merged

    def add(self, sid: str, gno: int) -> None:
        ivs = self.sets.get(sid)
        if ivs and ivs[-1][1] == gno:
            ivs[-1] = (ivs[-1][0], gno + 1)
        else:
            self._add_range(sid, gno, gno + 1)

    def copy(self) -> MysqlGtidSet:
        return MysqlGtidSet({k: list(v) for k, v in self.sets.items()})

    def encode(self) -> bytes:
        """The binary form ``COM_BINLOG_DUMP_GTID`` expects."""
        out = [struct.pack("<Q", len(self.sets))]
        for sid, ivs in sorted(self.sets.items()):
            out.append(uuid.UUID(sid).bytes + struct.pack("<Q", len(ivs)))
            out.extend(struct.pack("<qq", a, b) for a, b in ivs)
        return b"".join(out)

    def __str__(self) -> str:
        parts = []
        for sid, ivs in sorted(self.sets.items()):
            rs = [f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in ivs]
            parts.append(":".join([sid, *rs]))
        return ",".join(parts)
