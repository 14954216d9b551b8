"""Named stage types for job files, imported lazily, and option checking against signatures.

A job names a stage by a registered type (``csv``, ``postgres``) or by ``"module:Class"``.
Built-in types are ``"module:Class"`` strings imported on first use, so a job using only CSV
and SQLite never imports a database driver; a failed import becomes a :class:`ConfigError`
naming the pip extra to install.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from etlsync.core.errors import ConfigError

KINDS = ("source", "sink", "operator", "checkpoint")

_BUILTIN: dict[str, dict[str, str]] = {
    "source": {
        "csv": "etlsync.connectors.files:CsvSource",
        "jsonl": "etlsync.connectors.files:JsonlSource",
        "parquet": "etlsync.connectors.files:ParquetSource",
        "sqlite": "etlsync.connectors.sqlite:SqliteSource",
        "postgres": "etlsync.connectors.postgres:PostgresSource",
        "postgres_cdc": "etlsync.connectors.postgres.cdc:PostgresCdcSource",
        "mysql": "etlsync.connectors.mysql:MysqlSource",
        "mysql_cdc": "etlsync.connectors.mysql:MysqlCdcSource",
        "mongo": "etlsync.connectors.mongo:MongoSource",
        "mongo_cdc": "etlsync.connectors.mongo:MongoChangeStreamSource",
        "memory": "etlsync.testing:MemorySource",
    },
    "sink": {
        "csv": "etlsync.connectors.files:CsvSink",
        "jsonl": "etlsync.connectors.files:JsonlSink",
        "parquet": "etlsync.connectors.files:ParquetSink",
        "sqlite": "etlsync.connectors.sqlite:SqliteSink",
        "postgres": "etlsync.connectors.postgres:PostgresSink",
        "mysql": "etlsync.connectors.mysql:MysqlSink",
        "mongo": "etlsync.connectors.mongo:MongoSink",
        "collect": "etlsync.testing:CollectingSink",
    },
    "operator": {
        "select": "etlsync.operators:Select",
        "rename": "etlsync.operators:Rename",
        "cast": "etlsync.operators:Cast",
        "filter": "etlsync.operators:FilterExpr",
        "map": "etlsync.operators:Map",
    },
    "checkpoint": {
        "sqlite": "etlsync.connectors.sqlite.checkpoint:SqliteCheckpointStore",
        "memory": "etlsync.core.checkpoint:MemoryCheckpointStore",
        "postgres": "etlsync.connectors.postgres:PostgresCheckpointStore",
        "mysql": "etlsync.connectors.mysql:MysqlCheckpointStore",
    },
}
_REGISTRY: dict[str, dict[str, str | Callable[..., Any]]] = {
    k: dict(v) for k, v in _BUILTIN.items()
}

# module prefix -> pip extra providing its third-party dependencies
_EXTRAS = {
    "etlsync.connectors.postgres": "postgres",
    "etlsync.connectors.mysql": "mysql",
    "etlsync.connectors.mongo": "mongo",
    "etlsync.connectors.files": "parquet",
}
_DRIVER_EXTRAS = {"asyncpg": "postgres", "aiomysql": "mysql", "pymysql": "mysql",
                  "pymongo": "mongo", "bson": "mongo", "pyarrow": "parquet"}

PATH_OPTIONS = ("path", "file", "filename", "directory", "dir")


def register(kind: str, name: str, target: str | Callable[..., Any]) -> None:
    """Make ``name`` usable as a ``type`` of ``kind`` (source, sink, operator, checkpoint).

    :param target: a class or factory, or a ``"module:attribute"`` string imported on use.
    """
    if kind not in _REGISTRY:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    _REGISTRY[kind][name] = target


def unregister(kind: str, name: str) -> None:
    """Remove a registration (restoring the built-in one if there is one)."""
    _REGISTRY[kind].pop(name, None)
    if name in _BUILTIN.get(kind, {}):
        _REGISTRY[kind][name] = _BUILTIN[kind][name]


def names(kind: str) -> list[str]:
    """The registered type names of ``kind``."""
    return sorted(_REGISTRY[kind])


def resolve(kind: str, type_name: str, where: str) -> Callable[..., Any]:
    """The class or factory for ``type_name``; ``where`` (e.g. ``job.yaml: source.type``)
    prefixes errors."""
    target = _REGISTRY[kind].get(type_name)
    if target is None:
        if ":" not in type_name:
            close = difflib.get_close_matches(type_name, _REGISTRY[kind], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown {kind} type {type_name!r}{hint}; expected one of "
                              f"{', '.join(names(kind))} or 'package.module:Class'")
        target = type_name
    if not isinstance(target, str):
        return target
    return import_target(target, where, f"{kind} type {type_name!r}")


def import_target(target: str, where: str, what: str) -> Callable[..., Any]:
    """Import ``"module:attribute"``; failures become a ConfigError naming the pip extra."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{where}: {target!r} is not of the form 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        extra = _DRIVER_EXTRAS.get(missing.split(".")[0])
        if extra is None:
            extra = next((e for p, e in _EXTRAS.items() if module_name.startswith(p)), None)
        ours = missing == "etlsync" or missing.startswith("etlsync.")
        if ours and (missing == module_name or module_name.startswith(missing + ".")):
            raise ConfigError(f"{where}: {what} is not available in this etlsync installation "
                              f"(module {module_name} not found)") from None
        hint = f"; install it with: pip install 'etlsync[{extra}]'" if extra else ""
        raise ConfigError(f"{where}: {what} needs a package that is not installed "
                          f"({exc}){hint}") from None
    try:
        obj: Callable[..., Any] = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{where}: module {module_name} has no attribute {attr!r}") from None
    return obj


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: skip type checks
        return {}


def _check_value(value: Any, hint: Any) -> tuple[bool, Any]:
    """(ok, converted) when ``value`` fits ``hint``; (True, value) when ``hint`` cannot be
    checked."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True, value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, _UnionType):
        arms = typing.get_args(hint)
        checkable = False
        for arm in arms:
            ok, conv = _check_value(value, arm)
            if ok and _checkable(arm):
                return True, conv
            checkable = checkable or _checkable(arm)
        return (not checkable), value
    if hint is Path:
        return (True, Path(value)) if isinstance(value, str | Path) else (False, value)
    if not _checkable(hint):
        return True, value
    try:
        return True, msgspec.convert(value, hint, strict=False)
    except msgspec.ValidationError:
        if isinstance(value, str):  # `primary_key: id` for a list of one
            try:
                return True, msgspec.convert([value], hint, strict=False)
            except (msgspec.ValidationError, TypeError, ValueError):
                pass
        return False, value
    except (TypeError, ValueError):
        return True, value


_UnionType = type(int | None)


def _checkable(hint: Any) -> bool:
    if hint is Any or hint is Path:
        return hint is Path
    origin = typing.get_origin(hint) or hint
    if origin in (typing.Union, _UnionType):
        return any(_checkable(a) for a in typing.get_args(hint))
    try:
        msgspec.convert(None, hint, strict=False)
    except msgspec.ValidationError:
        return True
    except (TypeError, ValueError):
        return False
    return True


def _describe(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return text or str(hint).replace("typing.", "").replace("collections.abc.", "")


def bind_options(factory: Callable[..., Any], options: Mapping[str, Any], where: str,
                 *, positional: tuple[Any, ...] = (),
                 key_paths: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check ``options`` against ``factory``'s signature and convert them to its types.

    :param where: the key path of the options, e.g. ``job.yaml: source``; errors name
        ``where.option`` (or ``key_paths[option]`` when given).
    :raises ConfigError: for an unknown option (suggesting the closest valid name), a value of
        the wrong type, or a missing required option.
    """
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return dict(options)
    params = {n: p for n, p in sig.parameters.items()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    hints = _hints(factory)
    out: dict[str, Any] = {}
    paths = key_paths or {}
    for key, value in options.items():
        at = paths.get(key, f"{where}.{key}")
        if key not in params or params[key].kind is inspect.Parameter.POSITIONAL_ONLY:
            if takes_any:
                out[key] = value
                continue
            valid = [n for n, p in params.items() if p.kind is not p.POSITIONAL_ONLY]
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{at}: unknown option{hint} "
                              f"(valid options: {', '.join(valid) or 'none'})")
        hint_t = hints.get(key, inspect.Parameter.empty)
        ok, conv = _check_value(value, hint_t)
        if not ok:
            raise ConfigError(f"{at}: expected {_describe(hint_t)}, "
                              f"got {type(value).__name__}")
        out[key] = conv
    positional_names = list(params)[:len(positional)]
    missing = [n for n, p in params.items()
               if p.default is p.empty and n not in out and n not in positional_names
               and n not in ("self",)]
    if missing:
        raise ConfigError(f"{where}: missing required option(s) {', '.join(missing)}")
    return out


def accepts(factory: Callable[..., Any], option: str) -> bool:
    """Whether ``factory`` takes a keyword argument called ``option``."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    p = params.get(option)
    if p is not None and p.kind is not p.POSITIONAL_ONLY:
        return True
    return any(q.kind is q.VAR_KEYWORD for q in params.values())


def is_path_option(name: str) -> bool:
    """Whether an option named ``name`` holds a filesystem path (resolved against the job)."""
    return name in PATH_OPTIONS or name.endswith(("_path", "_file", "_dir"))
