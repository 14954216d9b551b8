"""The one place etlsync imports pyarrow for a feature that needs it (the optional
``parquet`` extra): a clear error when it is missing, and the allocator setting below."""

from __future__ import annotations

import os
from typing import Any

from etlsync.core.errors import ConfigError


def import_pyarrow(feature: str, instead: str = "") -> Any:
    """``pyarrow``, or a :class:`ConfigError` saying that ``feature`` needs it, how to
    install it and (``instead``) what else to do.

    Before the first import it sets ``MIMALLOC_ARENA_EAGER_COMMIT=0`` unless the environment
    already sets it: pyarrow's default allocator (mimalloc) then commits arena memory as it
    is used instead of up front, which lowered the peak RSS of a 1M-row CSV -> PostgreSQL
    load from ~142 to ~118 MB at the same speed (benchmarks/RESULTS.md, postgres_load). An
    allocator that is already running (pyarrow imported earlier) is left as it is.
    """
    os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
    try:
        import pyarrow
    except ImportError as exc:
        raise ConfigError(f"{feature} needs pyarrow: pip install 'etlsync[parquet]' "
                          f"(or pyarrow){', or ' + instead if instead else ''}") from exc
    return pyarrow
