"""The exceptions etlsync raises. Each names what is wrong and where."""

from __future__ import annotations


class EtlsyncError(Exception):
    """Base class of every etlsync error."""


class ConfigError(EtlsyncError):
    """A job file, option or argument is invalid; the message names it and what was expected."""


class StageError(EtlsyncError):
    """A pipeline stage failed; ``stage`` names it and ``__cause__`` is the original error."""

    def __init__(self, pipeline: str, stage: str, cause: BaseException) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.cause = cause
        super().__init__(f"pipeline {pipeline!r}: stage {stage!r} failed: {type(cause).__name__}: {cause}")


class SchemaError(EtlsyncError):
    """Source and target schemas disagree under the chosen schema policy."""


class ConflictError(EtlsyncError):
    """An upsert met an existing key under the ``fail`` conflict strategy."""


class DataError(EtlsyncError):
    """A value could not be converted or written; names the column, the value and the row."""

    def __init__(self, message: str, *, column: str | None = None, value: object = None,
                 row: object = None) -> None:
        self.column = column
        self.value = value
        self.row = row
        super().__init__(message)


class ServiceNotReady(EtlsyncError):
    """A server lacks a setting etlsync needs; the message names the setting and the fix."""
