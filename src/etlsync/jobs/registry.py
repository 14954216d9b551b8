"""Stage types for job files: the connector manifests, plus classes named ad hoc.

A job names a stage by a manifest's type name (``csv``, ``postgres``), by a name given to
:func:`register`, or by ``"module:Class"``. For the last two there is no manifest: the
options struct is made from the class's signature (:func:`options_from_signature`, the one
place etlsync reads signatures), so their options are checked the same way.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, cast

import msgspec

from etlsync.catalog import CATALOG
from etlsync.core.capabilities import capabilities_of
from etlsync.core.errors import ConfigError
from etlsync.manifest import Kind, Options, StageType, import_target

KINDS = tuple(k.value for k in Kind)
_ADHOC: dict[tuple[Kind, str], str | Callable[..., Any]] = {}
_MADE: dict[Any, tuple[type[Options], bool]] = {}


def register(kind: str, name: str, target: str | Callable[..., Any]) -> None:
    """Make ``name`` usable as a ``type`` of ``kind`` without a manifest (its options are
    its signature's). Prefer a :class:`~etlsync.manifest.Manifest` for connectors you ship."""
    _ADHOC[(Kind(kind), name)] = target


def unregister(kind: str, name: str) -> None:
    """Remove a :func:`register` ed name."""
    _ADHOC.pop((Kind(kind), name), None)


def names(kind: str) -> list[str]:
    """Every type name of ``kind`` a job can use."""
    return sorted({*CATALOG.names(kind), *(n for k, n in _ADHOC if k == kind)})


def resolve(kind: str, type_name: str, where: str) -> StageType:
    """The stage type a job's ``type:`` names."""
    target = _ADHOC.get((Kind(kind), type_name))
    if target is None and ":" in type_name:
        target = type_name
    if target is None:
        return CATALOG.find(kind, type_name, where)
    factory = import_target(target, where, f"{kind} type {type_name!r}",
                            extra_for=CATALOG.extra_for) \
        if isinstance(target, str) else target
    declared = CATALOG.of_target(factory)
    if declared is not None:
        return declared
    options, _ = options_from_signature(factory)
    return StageType(Kind(kind), type_name, _target_of(factory), options,
                     (inspect.getdoc(factory) or type_name).splitlines()[0],
                     capabilities_of(factory), family="adhoc", loaded=factory)


def _target_of(factory: Any) -> str:
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', '?')}"


def options_from_signature(factory: Callable[..., Any]) -> tuple[type[Options], bool]:
    """An :class:`Options` struct for ``factory``'s parameters (typed where the annotation
    is a type msgspec converts to, else any value) and whether it takes ``**kwargs`` (then
    unknown options pass through)."""
    made = _MADE.get(factory)
    if made is not None:
        return made
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = inspect.Signature()
    hints = _hints(factory)
    fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
    positional: list[str] = []
    takes_any = False
    for name, p in sig.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            takes_any = True
            continue
        if p.kind is p.VAR_POSITIONAL or name == "self":
            continue
        if p.kind is p.POSITIONAL_ONLY:
            positional.append(name)
        hint = _convertible(hints.get(name, Any))
        if p.default is p.empty:
            fields.append((name, hint))
        else:
            fields.append((name, hint, p.default))
    required = [f for f in fields if len(f) == 2]
    optional = [f for f in fields if len(f) == 3]
    struct = cast(type[Options], msgspec.defstruct(
        f"{getattr(factory, '__name__', 'Stage')}Options", [*required, *optional],
        bases=(Options,), kw_only=True, forbid_unknown_fields=not takes_any))
    struct.positional = tuple(positional)
    struct.paths = tuple(f[0] for f in fields if _is_path_name(f[0]))
    _MADE[factory] = (struct, takes_any)
    return struct, takes_any


def _is_path_name(name: str) -> bool:
    """Without a manifest saying so: options named like paths hold paths."""
    return name in ("path", "file", "filename", "directory", "dir") or name.endswith(
        ("_path", "_file", "_dir"))


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: values are not checked
        return {}


def _convertible(hint: Any) -> Any:
    """``hint`` if msgspec converts to it (with strings allowed where an enum is), else Any."""
    try:
        msgspec.inspect.type_info(hint)
    except (TypeError, ValueError, msgspec.ValidationError, NotImplementedError):
        return Any
    return hint


def check_kind(kind: str) -> Kind:
    try:
        return Kind(kind)
    except ValueError:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}") from None
