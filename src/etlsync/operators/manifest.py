"""The built-in operators (docs/concepts/operators.md)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.manifest import Kind, Manifest, Options, StageType, import_target


class SelectOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("columns",)

    columns: Annotated[list[str], Meta(description="The columns to keep, in this order")]
    strict: Annotated[bool, Meta(description="A row lacking a column is an error")] = False
    rename: Annotated[dict[str, str] | None, Meta(
        description="New names for some of the kept columns")] = None


class RenameOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("mapping",)

    mapping: Annotated[dict[str, str], Meta(description="{old name: new name}")]


class CastOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("types",)

    types: Annotated[dict[str, str], Meta(
        description="{column: type}: string, integer, float, decimal, boolean, date, time, "
                    "datetime, timestamp, interval, bytes, json, uuid")]
    formats: Annotated[dict[str, str] | None, Meta(
        description="{column: strptime format, or thousands separator for decimals}")] = None
    empty_as_null: Annotated[bool, Meta(
        description="An empty string becomes null (except for string targets)")] = True
    on_error: Annotated[Literal["fail", "skip"], Meta(
        description="A value that does not convert: fail, or drop the row (counted)")] = "fail"


class FilterOptions(Options, kw_only=True):
    renamed: ClassVar[dict[str, str]] = {"expr": "expression"}

    expression: Annotated[str | None, Meta(
        description="A safe expression, e.g. \"status == 'paid' and amount > 10\"")] = None
    callable: Annotated[str | None, Meta(
        description="Or a predicate 'module:function' taking a row")] = None

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if (self.expression is None) == (self.callable is None):
            raise ConfigError("filter: give an expression or a callable (exactly one)")
        if self.expression is not None:
            return (self.expression,), {}
        return (_function(self.callable),), {"kind": "callable"}


class MapOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("callable",)

    callable: Annotated[str, Meta(description="'module:function' taking and returning a row")]

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (_function(self.callable),), {}


def _function(target: str | None) -> Any:
    assert target is not None
    fn = import_target(target, "callable", f"function {target!r}")
    if not callable(fn):
        raise ConfigError(f"callable: {target!r} is not callable")
    return fn


Duration = Annotated[float | str, Meta(
    description="Seconds, or a duration such as '500ms', '10s', '5m', '1h', '1d'")]
_STATEFUL = frozenset({Capability.STATEFUL})


class AggregateOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("group_by", "aggregates")

    group_by: Annotated[list[str], Meta(description="The columns to group by")] = []
    aggregates: Annotated[dict[str, str], Meta(
        description="{output column: 'count()' | 'count(col)' | 'count_distinct(col)' | "
                    "'sum(col)' | 'avg(col)' | 'min(col)' | 'max(col)' | 'first(col)' | "
                    "'last(col)'}")]
    window: Annotated[dict[str, float | str] | None, Meta(
        description="{tumbling: SIZE}, {hopping: SIZE, every: HOP} or {session: GAP} on "
                    "time_column (none: the whole input)")] = None
    time_column: Annotated[str | None, Meta(description="The event time column of windows")] = None
    allowed_lateness: Annotated[float | str, Meta(
        description="How far behind the highest event time a row may be and still count")] = 0
    late: Annotated[Literal["drop", "dead_letter", "side_output", "fail"], Meta(
        description="Rows behind the watermark: drop, to the dead-letter sink, to the stream "
                    "'<stream>.late', or fail")] = "drop"
    emit: Annotated[Literal["close", "changelog"], Meta(
        description="close: a row per window when it closes; changelog: upserts keyed by "
                    "group and window_start after every batch")] = "close"
    max_state: Annotated[int, Meta(ge=1, description="The most groups/windows and distinct "
                                                       "values held (then an error)")] = 1_000_000
    window_columns: Annotated[list[str], Meta(
        description="Names of the window start and end columns")] = msgspec.field(
        default_factory=lambda: ["window_start", "window_end"])


class LookupSpec(Options, kw_only=True, forbid_unknown_fields=False):
    """A lookup: ``{type: postgres | sqlite | source | memory, ...}``."""

    type: Annotated[Literal["postgres", "sqlite", "source", "memory"], Meta(
        description="postgres (connection, table, schema), sqlite (path, table), source (a "
                    "source's snapshot: source), memory (rows)")]
    key: Annotated[list[str], Meta(description="The lookup's key columns")]


class JoinOptions(Options, kw_only=True):
    # YAML 1.1 reads a bare ``on:`` key as the boolean true; :meth:`migrate` takes it back
    # (listed here so a ``- join: {on: ...}`` entry is recognised as options)
    renamed: ClassVar[dict[Any, str]] = {True: "on"}

    kind: Annotated[Literal["lookup", "interval", "cdc"], Meta(
        description="lookup: enrich from a table or snapshot; interval: two streams within a "
                    "time window; cdc: maintain the join of two tables' change streams")] = \
        "lookup"
    on: Annotated[dict[str, str] | list[str] | str, Meta(
        description="{stream (left) column: lookup (right) column}")]
    lookup: Annotated[dict[str, Any] | None, Meta(
        description="lookup joins: {type: postgres, connection, table, key, columns} | "
                    "{type: sqlite, path, table, key} | {type: source, source: {...}, key}")] = None
    columns: Annotated[list[str] | None, Meta(
        description="lookup joins: the lookup columns to add (default: all but the key)")] = None
    prefix: Annotated[str, Meta(description="lookup joins: prefix of the added columns")] = ""
    miss: Annotated[Literal["null", "drop", "dead_letter", "side_output", "fail"], Meta(
        description="lookup joins: a row without a match")] = "null"
    cache_size: Annotated[int, Meta(ge=0, description="lookup joins: keys cached")] = 100_000
    ttl: Annotated[float | None, Meta(
        description="lookup joins: seconds a cached key is valid (null: until evicted)")] = 300.0
    left: Annotated[str | None, Meta(description="interval/cdc: the left stream")] = None
    right: Annotated[str | None, Meta(description="interval/cdc: the right stream")] = None
    time_column: Annotated[str | None, Meta(description="interval: the event time column")] = None
    right_time_column: Annotated[str | None, Meta(
        description="interval: the right stream's event time column, if named differently")] = None
    within: Annotated[float | str, Meta(
        description="interval: how far apart matching event times may be")] = 60
    allowed_lateness: Annotated[float | str, Meta(
        description="interval: how late rows may arrive")] = 0
    how: Annotated[Literal["inner", "left"], Meta(description="interval/cdc: inner or left")] = \
        "inner"
    right_prefix: Annotated[str, Meta(description="interval/cdc: prefix of right columns")] = ""
    stream: Annotated[str | None, Meta(description="interval/cdc: the output stream")] = None
    left_key: Annotated[list[str], Meta(
        description="cdc: the left table's key (default: its schema's)")] = []
    right_key: Annotated[list[str], Meta(
        description="cdc: the right table's key (default: its schema's)")] = []
    max_state: Annotated[int, Meta(ge=1, description="interval/cdc: rows held at most")] = \
        1_000_000

    @classmethod
    def migrate(cls, values: dict[Any, Any], where: str) -> dict[str, Any]:
        if True in values:  # YAML 1.1 reads a bare ``on:`` key as the boolean true
            if "on" in values:
                raise ConfigError(f"{where}.on: given twice")
            values["on"] = values.pop(True)
        return super().migrate(values, where)

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (), {"options": self}


def make_join(options: JoinOptions, name: str = "join") -> Any:
    """The operator of a job file's ``join`` entry."""
    o = options
    if o.kind == "lookup":
        if o.lookup is None:
            raise ConfigError("join: a lookup join needs lookup: {type: ..., key: ...}")
        from etlsync.operators.join import LookupJoin

        return LookupJoin(build_lookup(o.lookup, "join.lookup"), o.on, columns=o.columns,
                          prefix=o.prefix, miss=o.miss, cache_size=o.cache_size, ttl=o.ttl,
                          name=name)
    if not o.left or not o.right:
        raise ConfigError(f"join: a {o.kind} join needs left and right (stream names)")
    if o.kind == "interval":
        from etlsync.operators.join import IntervalJoin

        return IntervalJoin(o.left, o.right, o.on, time_column=o.time_column,
                            right_time_column=o.right_time_column, within=o.within,
                            allowed_lateness=o.allowed_lateness, how=o.how,
                            right_prefix=o.right_prefix, stream=o.stream,
                            max_state=o.max_state)
    from etlsync.operators.cdcjoin import CdcJoin

    return CdcJoin(o.left, o.right, o.on, left_key=o.left_key, right_key=o.right_key, how=o.how,
                   right_prefix=o.right_prefix, stream=o.stream, max_state=o.max_state)


def build_lookup(spec: dict[str, Any], where: str) -> Any:
    """A :class:`~etlsync.operators.lookup.Lookup` from a job file's mapping."""
    from etlsync.catalog import CATALOG
    from etlsync.operators import lookup as lk

    opts = dict(spec)
    kind = opts.pop("type", None)
    key = opts.pop("key", None)
    if key is None:
        raise ConfigError(f"{where}.key: required: the lookup's key column(s)")
    try:
        if kind == "postgres":
            return lk.PostgresLookup(opts.pop("connection"), opts.pop("table"), key, **opts)
        if kind == "sqlite":
            return lk.SqliteLookup(opts.pop("path"), opts.pop("table"), key, **opts)
        if kind == "memory":
            return lk.MemoryLookup(opts.pop("rows"), key)
        if kind == "source":
            src = dict(opts.pop("source"))
            stage = CATALOG.find(Kind.SOURCE, str(src.pop("type", "")), f"{where}.source.type")
            args, kwargs = stage.bind(src, f"{where}.source").arguments()
            return lk.SnapshotLookup(stage.load()(*args, **kwargs), key, **opts)
    except KeyError as exc:
        raise ConfigError(f"{where}.{exc.args[0]}: required for a {kind} lookup") from None
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    raise ConfigError(f"{where}.type: {kind!r} is not postgres, sqlite, source or memory")


class DedupeOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("key",)

    key: Annotated[list[str], Meta(description="The columns that identify a row")]
    within: Annotated[float | str | None, Meta(
        description="Remember a key this long in event time (with time_column)")] = None
    time_column: Annotated[str | None, Meta(description="The event time column")] = None
    max_keys: Annotated[int, Meta(ge=1, description="The most keys remembered")] = 1_000_000
    on_full: Annotated[Literal["evict", "fail"], Meta(
        description="At max_keys: forget the oldest keys, or fail")] = "evict"


class CleanOptions(Options, kw_only=True):
    trim: Annotated[bool, Meta(description="Strip whitespace around strings")] = True
    nulls: Annotated[list[str], Meta(
        description="Strings that become null, e.g. ['', 'N/A', 'null']")] = []
    replace: Annotated[dict[str, list[list[str]]] | None, Meta(
        description="{column: [[regex, replacement], ...]}")] = None
    case: Annotated[dict[str, Literal["lower", "upper", "title", "casefold"]] | None, Meta(
        description="{column: lower | upper | title | casefold}")] = None
    defaults: Annotated[dict[str, Any] | None, Meta(
        description="{column: value for nulls}")] = None
    columns: Annotated[list[str] | None, Meta(
        description="Where trim and nulls apply (default: every column)")] = None


class SplitOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("column", "into")

    column: Annotated[str, Meta(description="The column to split")]
    into: Annotated[list[str], Meta(
        description="The new columns (a regex's named groups if empty)")] = []
    delimiter: Annotated[str | None, Meta(description="Split on this string")] = None
    regex: Annotated[str | None, Meta(description="Or take this regex's groups")] = None
    keep: Annotated[bool, Meta(description="Keep the original column")] = False
    trim: Annotated[bool, Meta(description="Strip whitespace around the parts")] = True
    on_mismatch: Annotated[Literal["null", "fail"], Meta(
        description="A value the regex does not match: nulls, or fail")] = "null"


class MergeOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("into", "columns")

    into: Annotated[str, Meta(description="The new column")]
    columns: Annotated[list[str], Meta(
        description="The columns to merge (default: the template's names)")] = []
    separator: Annotated[str, Meta(description="Joins the non-null values")] = " "
    template: Annotated[str | None, Meta(
        description="Or render '{first} {last}' ({{ and }} for braces)")] = None
    drop: Annotated[bool, Meta(description="Remove the merged columns")] = False


class QualityOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("rules",)

    rules: Annotated[list[dict[str, Any]], Meta(
        description="[{not_null: [id]}, {unique: id}, {range: amount, min: 0}, {regex: email, "
                    "pattern: ...}, {accepted: status, values: [...]}, {referential: "
                    "customer_id, lookup: {...}}, {expression: '...'}], each with action: "
                    "warn | quarantine | fail and an optional name")]
    quarantine_to: Annotated[Literal["dead_letter", "side_output"], Meta(
        description="Where quarantined rows go (the job's errors.dead_letter, or the stream "
                    "'<stream>.quarantine')")] = "dead_letter"
    max_keys: Annotated[int, Meta(ge=1, description="unique rules: values remembered at "
                                                      "most")] = 1_000_000
    log_limit: Annotated[int, Meta(ge=0, description="warn rules: rows logged at most")] = 10


class SqlOptions(Options, kw_only=True):
    positional: ClassVar[tuple[str, ...]] = ("statement",)

    statement: Annotated[str, Meta(description="One SQL query over the table 'batch'")]
    table: Annotated[str, Meta(description="The table name the statement reads")] = "batch"
    over: Annotated[Literal["batch", "pass", "rows"], Meta(
        description="Run per batch, once over a whole pass, or over windows of window_rows "
                    "rows")] = "batch"
    window_rows: Annotated[int | None, Meta(
        description="over: rows: rows per window (whole batches)")] = None
    max_rows: Annotated[int, Meta(ge=1, description="over: pass: rows held at most")] = 5_000_000
    threads: Annotated[int | None, Meta(description="DuckDB threads (default: its own)")] = None


MANIFEST = Manifest(
    family="operators",
    summary="Operators: select, rename, cast, filter, map, clean, split/merge columns, "
            "aggregate, join, dedupe, quality, sql",
    stages=(
        StageType(Kind.OPERATOR, "select", "etlsync.operators.columns:Select", SelectOptions,
                  "Keep some columns, in order (optionally renaming them)", shorthand="columns"),
        StageType(Kind.OPERATOR, "rename", "etlsync.operators.columns:Rename", RenameOptions,
                  "Rename columns", shorthand="mapping"),
        StageType(Kind.OPERATOR, "cast", "etlsync.operators.cast:Cast", CastOptions,
                  "Convert column values to types", shorthand="types"),
        StageType(Kind.OPERATOR, "filter", "etlsync.operators.basic:filter_operator",
                  FilterOptions, "Keep rows matching an expression or a predicate",
                  shorthand="expression"),
        StageType(Kind.OPERATOR, "map", "etlsync.operators.basic:Map", MapOptions,
                  "Apply a Python function to each row", shorthand="callable"),
        StageType(Kind.OPERATOR, "aggregate", "etlsync.operators.aggregate:Aggregate",
                  AggregateOptions, "Group and aggregate, over the input or event-time windows",
                  _STATEFUL),
        StageType(Kind.OPERATOR, "join", "etlsync.operators.manifest:make_join", JoinOptions,
                  "Lookup join, stream-stream interval join, or join of two CDC streams"),
        StageType(Kind.OPERATOR, "dedupe", "etlsync.operators.dedupe:Dedupe", DedupeOptions,
                  "Drop rows whose key was seen (in a window or a bounded key set)",
                  _STATEFUL, shorthand="key"),
        StageType(Kind.OPERATOR, "clean", "etlsync.operators.cleaning:Clean", CleanOptions,
                  "Trim, null normalisation, regex replace, case, defaults"),
        StageType(Kind.OPERATOR, "split_columns", "etlsync.operators.cleaning:SplitColumns",
                  SplitOptions, "Split a column on a delimiter or by regex groups"),
        StageType(Kind.OPERATOR, "merge_columns", "etlsync.operators.cleaning:MergeColumns",
                  MergeOptions, "Merge columns with a separator or a template"),
        StageType(Kind.OPERATOR, "quality", "etlsync.operators.quality:Quality", QualityOptions,
                  "Data quality rules: warn, quarantine to dead letters, or fail",
                  shorthand="rules"),
        StageType(Kind.OPERATOR, "sql", "etlsync.operators.sql:Sql", SqlOptions,
                  "A SQL statement over each batch or pass (DuckDB)", shorthand="statement",
                  extra="sql"),
    ),
)
