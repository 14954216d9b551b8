"""The catalog of stage types: which connector manifests exist, the built-in families (every
``etlsync.connectors.<family>.manifest`` module, plus the operators and the test stages) and
third-party ones from the ``etlsync.connectors`` entry point group or :func:`register`.

    [project.entry-points."etlsync.connectors"]
    acme = "acme_etlsync.manifest:MANIFEST"
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from etlsync.core.errors import ConfigError
from etlsync.manifest import Kind, Manifest, StageType

ENTRY_POINT_GROUP = "etlsync.connectors"

BUILTIN_MANIFESTS = ("etlsync.operators.manifest", "etlsync.testing")
"""Built-in manifests outside ``etlsync.connectors`` (whose families are found by scanning:
every ``etlsync.connectors.<family>.manifest`` module)."""


def builtin_manifest_modules() -> list[str]:
    connectors = importlib.import_module("etlsync.connectors")
    families = sorted(info.name for info in pkgutil.iter_modules(connectors.__path__)
                      if info.ispkg)
    return [f"etlsync.connectors.{f}.manifest" for f in families] + list(BUILTIN_MANIFESTS)


@dataclass
class Catalog:
    """Stage types by kind and name, from the built-in manifests, entry points and
    :meth:`register`."""

    manifests: dict[str, Manifest] = field(default_factory=dict)
    _types: dict[tuple[Kind, str], StageType] = field(default_factory=dict)
    _loaded: bool = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in builtin_manifest_modules():
            try:
                found = importlib.import_module(module).MANIFEST
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
                continue  # a family not built yet
            self.register(found)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                manifest = ep.load()
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the rest
                warnings.warn(f"connector entry point {ep.name!r} ({ep.value}) failed to load: "
                              f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
                continue
            if isinstance(manifest, Manifest):
                self.register(manifest)

    def register(self, manifest: Manifest) -> None:
        """Add (or replace) a family's manifest."""
        old = self.manifests.pop(manifest.family, None)
        if old is not None:
            for s in old.stages:
                self._types.pop((s.kind, s.name), None)
        self.manifests[manifest.family] = manifest
        for s in manifest.stages:
            self._types[(s.kind, s.name)] = s

    def unregister(self, family: str) -> None:
        old = self.manifests.pop(family, None)
        for s in old.stages if old is not None else ():
            self._types.pop((s.kind, s.name), None)

    def types(self, kind: Kind | str) -> list[StageType]:
        self._load()
        return sorted((s for (k, _), s in self._types.items() if k == kind), key=lambda s: s.name)

    def names(self, kind: Kind | str) -> list[str]:
        return [s.name for s in self.types(kind)]

    def find(self, kind: Kind | str, name: str, where: str) -> StageType:
        """The stage type called ``name``; an unknown name suggests the closest one."""
        self._load()
        found = self._types.get((Kind(kind), name))
        if found is None:
            known = self.names(kind)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown {kind} type {name!r}{hint}; expected one of "
                              f"{', '.join(known)} or 'package.module:Class'")
        return found

    def of_target(self, target: object) -> StageType | None:
        """The stage type whose class ``target`` is (for ``'module:Class'`` job types)."""
        self._load()
        qual = f"{getattr(target, '__module__', '')}:{getattr(target, '__qualname__', '')}"
        for s in self._types.values():
            if s.target == qual:
                return s
        return None

    def extra_for(self, module: str) -> str | None:
        """The pip extra that installs ``module`` (from the manifests' ``imports``)."""
        self._load()
        for m in self.manifests.values():
            if module in m.imports:
                return m.extra
        return None

    def all(self) -> Iterable[StageType]:
        self._load()
        return list(self._types.values())


CATALOG = Catalog()


def register(manifest: Manifest) -> None:
    """Make a third-party family's stages usable in job files (see :data:`CATALOG`)."""
    CATALOG.register(manifest)
