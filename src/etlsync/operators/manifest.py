"""The built-in operators (docs/concepts/operators.md)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from msgspec import Meta

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


MANIFEST = Manifest(
    family="operators",
    summary="Row operators: select, rename, cast, filter, map",
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
    ),
)
