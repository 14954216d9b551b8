"""structlog loggers for etlsync. The library never configures logging for the application:
when structlog is unconfigured, only warnings and errors are printed (to stderr)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_fallback: Any = None


def get_logger(**bound: Any) -> Any:
    """A structlog logger with ``bound`` key-values (pipeline, stage, ...)."""
    global _fallback
    if structlog.is_configured():
        return structlog.get_logger("etlsync").bind(**bound)
    if _fallback is None:
        _fallback = structlog.wrap_logger(
            structlog.PrintLogger(sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
        )
    return _fallback.bind(**bound)
