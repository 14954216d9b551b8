"""What code generation works on: queries read from a file, their parameters and result
columns with logical types, and the error every bad input raises."""

from __future__ import annotations

from dataclasses import dataclass, field

from etlsync.core.errors import ConfigError

KINDS = ("one", "many", "exec", "execrows", "transfer")
"""Query kinds, as sqlc names them (``transfer``: an ``INSERT ... SELECT`` copied as a program)."""

LOGICAL_TYPES = ("int16", "int32", "int64", "float32", "float64", "decimal", "text", "bool",
                 "date", "time", "timestamp", "timestamptz", "bytes", "json", "uuid", "unknown")


class CodegenError(ConfigError):
    """Bad input to code generation: the message names the query, line and column."""


@dataclass(frozen=True, slots=True)
class SqlType:
    """A logical type and the SQL type it came from (named in comments of fallbacks)."""

    logical: str
    sql: str = ""

    def __post_init__(self) -> None:
        if self.logical not in LOGICAL_TYPES:
            raise ValueError(f"unknown logical type {self.logical!r}")


UNKNOWN = SqlType("unknown")


@dataclass(slots=True)
class Param:
    """One distinct parameter (``:name`` or ``$N``); ``index`` is 0-based, in order of first use."""

    name: str
    index: int
    type: SqlType = UNKNOWN
    nullable: bool = False
    named: bool = False  # written as :name (else $N or ?: the name was inferred)


@dataclass(slots=True)
class ResultColumn:
    name: str
    type: SqlType = UNKNOWN
    nullable: bool = True


@dataclass(slots=True)
class TransferSpec:
    """How a ``:transfer`` query writes: target table and columns, mode, key, batch size."""

    table: str
    columns: list[str]
    write_mode: str = "append"  # append | upsert
    key: list[str] = field(default_factory=list)
    batch_size: int = 1000


@dataclass(slots=True)
class Query:
    """A named query of a file. ``sql`` is the text as written; ``canonical`` has every
    parameter occurrence replaced by the placeholder ``:etlp_<i>`` (i = the parameter's index)."""

    name: str
    kind: str
    sql: str
    canonical: str
    line: int  # 1-based line of the SQL's first character in the file
    col: int
    file: str
    params: list[Param] = field(default_factory=list)
    occurrences: list[int] = field(default_factory=list)  # param index per placeholder, in text order
    columns: list[ResultColumn] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    transfer: TransferSpec | None = None
    offsets: list[tuple[int, int]] = field(default_factory=list)  # (canonical offset, delta)

    def where(self, canonical_offset: int | None = None) -> str:
        """``file:line:col`` of an offset into ``canonical`` (the query's start without one)."""
        if canonical_offset is None:
            return f"{self.file}:{self.line}:{self.col}"
        offset = canonical_offset
        for start, delta in self.offsets:
            if canonical_offset >= start:
                offset = canonical_offset - delta
        offset = max(0, min(offset, len(self.sql)))
        before = self.sql[:offset]
        line = self.line + before.count("\n")
        col = offset - before.rfind("\n") if "\n" in before else self.col + offset
        return f"{self.file}:{line}:{col}"

    def error(self, message: str, canonical_offset: int | None = None) -> CodegenError:
        return CodegenError(f"{self.where(canonical_offset)}: query {self.name!r}: {message}")


@dataclass(slots=True)
class QueryFile:
    path: str
    dialect: str  # the dialect the file is written in: postgres | mysql
    queries: list[Query]
