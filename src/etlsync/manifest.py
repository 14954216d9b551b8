"""Connector manifests: what each family of stages declares, in one place.

A family's ``manifest.py`` builds one :class:`Manifest`: its stage types and their YAML
names, the pip extra they need, their capabilities, a typed :class:`Options` struct per stage
(one line of description per field), its error classifier, and its checkpoint and dead-letter
types. A manifest module imports no driver, so job validation, ``etlsync init``, ``etlsync
list`` and the JSON Schema of job files (``etlsync schema``) work without the extras.

Which manifests exist is :mod:`etlsync.registry`'s business (the built-in families and the
``etlsync.connectors`` entry points). See docs/concepts/manifests.md.
"""

from __future__ import annotations

import difflib
import importlib
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import msgspec

from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError


class Kind(StrEnum):
    SOURCE = "source"
    SINK = "sink"
    OPERATOR = "operator"
    CHECKPOINT = "checkpoint"
    DEAD_LETTER = "dead_letter"


class Options(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every stage's options. Subclasses declare fields as
    ``Annotated[type, msgspec.Meta(description="...")] = default`` with the stage
    constructor's own defaults (a conformance test holds them equal)."""

    renamed: ClassVar[Mapping[str, str]] = {}
    """Old option name -> current name: accepted for one release, with a warning."""
    positional: ClassVar[tuple[str, ...]] = ()
    """Fields the constructor takes positionally (in this order)."""
    paths: ClassVar[tuple[str, ...]] = ()
    """Fields holding file system paths (a job resolves them against its own directory)."""
    secrets: ClassVar[tuple[str, ...]] = ()
    """Fields whose values are secrets (never shown in plans)."""

    @classmethod
    def migrate(cls, values: dict[str, Any], where: str) -> dict[str, Any]:
        """Options under old names, moved to the current ones with a warning (default: the
        flat :attr:`renamed` map; a family may move more, e.g. flat connection fields)."""
        for old, new in cls.renamed.items():
            if old in values:
                if new in values:
                    raise ConfigError(f"{where}.{old}: renamed to {new!r}; give only {new!r}")
                deprecated(f"{where}.{old}", f"the option is now called {new!r}")
                values[new] = values.pop(old)
        return values

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` for the stage constructor (nested structs as dicts)."""
        values = {f: _plain(getattr(self, f)) for f in self.__struct_fields__}
        args = tuple(values.pop(f) for f in self.positional)
        return args, values


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {k: _plain(v) for k, v in msgspec.structs.asdict(value).items()}
    return value


def deprecated(where: str, what: str) -> None:
    """Warn that an old option name was used (it keeps working for one release)."""
    warnings.warn(f"{where}: {what} (the old name keeps working for one release)",
                  DeprecationWarning, stacklevel=4)


@dataclass(frozen=True)
class StageType:
    """One stage type of a family.

    :param target: ``"module:Class"`` (or factory), imported only when a job uses it.
    :param shorthand: operators: the option ``- name: value`` fills (``- select: [a, b]``).
    """

    kind: Kind
    name: str
    target: str
    options: type[Options]
    summary: str
    capabilities: frozenset[Capability] = frozenset()
    shorthand: str | None = None
    family: str = ""
    extra: str | None = None
    loaded: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    """The class itself, for stage types made at run time (no importable target)."""

    def load(self, where: str = "") -> Callable[..., Any]:
        """The class or factory; a missing driver is a :class:`ConfigError` naming the extra."""
        if self.loaded is not None:
            return self.loaded
        return import_target(self.target, where or self.name, f"{self.kind} type {self.name!r}",
                             self.extra)

    def bind(self, given: Mapping[str, Any], where: str,
             key_paths: Mapping[str, str] | None = None) -> Options:
        """Validate ``given`` (a job's options) into this stage's :class:`Options`.

        :param key_paths: option -> where it was written, when not ``where.option``.
        :raises ConfigError: naming ``where.option``: an unknown option (with the closest
            valid name), a value of the wrong type or a missing required option.
        """
        values = self.options.migrate(dict(given), where)
        return convert_options(self.options, values, where, key_paths)

    def fields(self) -> list[FieldInfo]:
        """The options, with types, defaults and descriptions (for prompts and docs)."""
        return describe_options(self.options)


@dataclass(frozen=True)
class Manifest:
    """Everything a family of connectors declares.

    :param extra: the pip extra its stages need (``pip install 'etlsync[extra]'``).
    :param classifier: ``"module:function"`` classifying this family's driver errors for the
        resilience layer (retry, reconnect, bad data).
    """

    family: str
    summary: str
    stages: tuple[StageType, ...]
    extra: str | None = None
    classifier: str | None = None
    imports: tuple[str, ...] = ()
    """Top-level modules the extra installs (a failed import of one names the extra)."""

    def __post_init__(self) -> None:
        stages = tuple(StageType(s.kind, s.name, s.target, s.options, s.summary, s.capabilities,
                                 s.shorthand, self.family, s.extra or self.extra, s.loaded)
                       for s in self.stages)
        object.__setattr__(self, "stages", stages)


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str
    required: bool
    default: Any
    description: str


def describe_options(options: type[Options]) -> list[FieldInfo]:
    info = msgspec.inspect.type_info(options)
    assert isinstance(info, msgspec.inspect.StructType)
    out = []
    for f in info.fields:
        ftype = f.type
        desc = ""
        if isinstance(ftype, msgspec.inspect.Metadata):
            desc = str(ftype.description or "") if hasattr(ftype, "description") else ""
            desc = desc or str((ftype.extra_json_schema or {}).get("description", ""))
            ftype = ftype.type
        default = None if f.default is msgspec.NODEFAULT else f.default
        if f.default_factory is not msgspec.NODEFAULT:
            default = f.default_factory()
        out.append(FieldInfo(f.name, _type_text(ftype), f.required, default, desc))
    return out


def _type_text(t: Any) -> str:
    name = type(t).__name__.removesuffix("Type").lower()
    if isinstance(t, msgspec.inspect.UnionType):
        return " | ".join(_type_text(x) for x in t.types)
    if isinstance(t, msgspec.inspect.ListType):
        return f"list[{_type_text(t.item_type)}]"
    if isinstance(t, msgspec.inspect.DictType):
        return f"dict[{_type_text(t.key_type)}, {_type_text(t.value_type)}]"
    if isinstance(t, msgspec.inspect.LiteralType):
        return " | ".join(repr(v) for v in t.values)
    if isinstance(t, msgspec.inspect.Metadata):
        return _type_text(t.type)
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
            "none": "null"}.get(name, name)


_FIELD_AT = re.compile(r" - at `\$\.?([^`]*)`$")


def convert_options(options: type[Options], values: dict[str, Any], where: str,
                    key_paths: Mapping[str, str] | None = None) -> Options:
    """``values`` as ``options`` (a lone string where a list is expected is a list of one)."""
    for f in options.__struct_fields__:
        if isinstance(values.get(f), str) and _wants_list(options, f):
            values[f] = [values[f]]
    try:
        return msgspec.convert(values, options, strict=False)
    except msgspec.ValidationError as exc:
        raise _options_error(options, exc, where, key_paths or {}) from None


def _wants_list(options: type[Options], name: str) -> bool:
    hints = _type_infos(options)
    t = hints.get(name)
    while isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    arms = t.types if isinstance(t, msgspec.inspect.UnionType) else (t,)
    return any(isinstance(a, (msgspec.inspect.ListType, msgspec.inspect.TupleType,
                              msgspec.inspect.VarTupleType)) for a in arms) and not any(
        isinstance(a, msgspec.inspect.StrType) for a in arms)


_INFO_CACHE: dict[type, dict[str, Any]] = {}


def _type_infos(options: type[Options]) -> dict[str, Any]:
    found = _INFO_CACHE.get(options)
    if found is None:
        info = msgspec.inspect.type_info(options)
        assert isinstance(info, msgspec.inspect.StructType)
        found = _INFO_CACHE[options] = {f.name: f.type for f in info.fields}
    return found


def _options_error(options: type[Options], exc: msgspec.ValidationError, where: str,
                   key_paths: Mapping[str, str]) -> ConfigError:
    text = str(exc)
    m = _FIELD_AT.search(text)
    key = m.group(1) if m else ""
    what = _FIELD_AT.sub("", text)
    valid = list(options.__struct_fields__)

    def at(path: str) -> str:
        head, dot, rest = path.partition(".")
        head, bracket, more = head.partition("[")
        found = key_paths.get(head, f"{where}.{head}")
        return found + (f"[{more}" if bracket else "") + (f".{rest}" if dot else "")

    unknown = re.match(r"Object contains unknown field `(.+)`", what)
    if unknown:
        name = unknown.group(1)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ConfigError(f"{at(f'{key}.{name}' if key else name)}: unknown option{hint} "
                           f"(valid options: {', '.join(valid) or 'none'})")
    missing = re.match(r"Object missing required field `(.+)`", what)
    if missing:
        return ConfigError(f"{where}: missing required option {missing.group(1)!r}")
    what = what.replace("`", "")
    bad = re.match(r"Invalid enum value (.+)$", what)
    choices = _choices(options, key.split(".")[0].split("[")[0]) if bad else []
    if bad and choices:
        close = difflib.get_close_matches(bad.group(1).strip("'\""), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        what = f"invalid value {bad.group(1)}{hint}; expected one of {', '.join(choices)}"
    elif what.startswith("Expected"):
        what = "expected" + what.removeprefix("Expected")
    return ConfigError(f"{at(key)}: {what}" if key else f"{where}: {what}")


def _choices(options: type[Options], name: str) -> list[str]:
    """The allowed values of a field typed by a ``Literal``."""
    t = _type_infos(options).get(name)
    while isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    arms = t.types if isinstance(t, msgspec.inspect.UnionType) else (t,)
    return [str(v) for a in arms if isinstance(a, msgspec.inspect.LiteralType) for v in a.values]


def import_target(target: str, where: str, what: str, extra: str | None = None,
                  extra_for: Callable[[str], str | None] | None = None) -> Callable[..., Any]:
    """Import ``"module:attribute"``; failures become a ConfigError naming the pip extra
    (``extra``, or the one ``extra_for(module)`` names for the module that is missing)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{where}: {target!r} is not of the form 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        ours = missing == "etlsync" or missing.startswith("etlsync.")
        if ours and (missing == module_name or module_name.startswith(missing + ".")):
            raise ConfigError(f"{where}: {what} is not available in this etlsync installation "
                              f"(module {module_name} not found)") from None
        if extra is None and extra_for is not None:
            extra = extra_for(missing.split(".")[0])
        hint = f"; install it with: pip install 'etlsync[{extra}]'" if extra else ""
        raise ConfigError(f"{where}: {what} needs a package that is not installed "
                          f"({exc}){hint}") from None
    try:
        obj: Callable[..., Any] = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{where}: module {module_name} has no attribute {attr!r}") from None
    return obj
