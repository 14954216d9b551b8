"""Renamed keyword arguments: old option names keep working for one release, with a warning."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from etlsync.core.errors import ConfigError

P = ParamSpec("P")
R = TypeVar("R")


def renamed_keywords(renames: dict[str, str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a constructor so ``old=`` keywords reach it as ``new=`` with a
    ``DeprecationWarning`` (``renames`` maps old -> new; the manifest's ``Options.renamed``
    is the same dict, so YAML and Python accept the same old names)."""
    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            for old, new in renames.items():
                if old in kwargs:
                    owner = type(args[0]).__name__ if args else fn.__qualname__
                    if new in kwargs:
                        raise ConfigError(f"{owner}: {old!r} was renamed to {new!r}; "
                                          f"give only {new!r}")
                    warnings.warn(f"{owner}: the option {old!r} is now called {new!r} ({old!r} "
                                  "keeps working for one release)", DeprecationWarning,
                                  stacklevel=2)
                    value: Any = kwargs.pop(old)
                    kwargs[new] = value
            return fn(*args, **kwargs)
        return inner
    return wrap
