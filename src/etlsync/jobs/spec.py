"""The job file: its msgspec schema, loading, ``${VAR}`` substitution and error messages.

A job file is YAML::

    name: orders                      # default: the file name without extension
    source: {type: csv, path: data/orders.csv}
    operators:
      - cast: {price: decimal, updated_at: datetime}
    sink: {type: sqlite, path: out/orders.db, table: orders}
    sync: {sync_mode: incremental, cursor_field: updated_at, primary_key: [id]}
    write: {write_mode: upsert}
    batch_size: 5000
    checkpoint: {type: sqlite, path: .etlsync/state.db}   # the default

Every error names the file, the key path and what was expected.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from etlsync.core.errors import ConfigError
from etlsync.jobs.env import Redactor, substitute

DEFAULT_CHECKPOINT = {"type": "sqlite", "path": ".etlsync/state.db"}
"""Where a job's checkpoint lives unless ``checkpoint:`` says otherwise: relative paths
resolve against the job file's directory, so the state stays beside the job."""


class SyncSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How the source reads: Airbyte-style names."""

    sync_mode: Literal["full_refresh", "incremental", "cdc"] | None = None
    cursor_field: str | None = None
    primary_key: str | list[str] | None = None

    @property
    def key(self) -> tuple[str, ...] | None:
        if self.primary_key is None:
            return None
        return (self.primary_key,) if isinstance(self.primary_key, str) else tuple(self.primary_key)


class WriteSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How the sinks write."""

    write_mode: Literal["append", "overwrite", "upsert"] | None = None
    conflict: Literal["skip", "overwrite", "merge", "fail"] | None = None
    schema_policy: Literal["evolve", "freeze", "discard"] | None = None


class ErrorsSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How failures and bad rows are handled (docs/concepts/resilience.md): every stage is
    wrapped with retries and a breaker; bad rows are isolated by bisection."""

    on_bad_data: Literal["fail", "skip", "dead_letter"] = "fail"
    dead_letter: dict[str, Any] | None = None
    """``{type: jsonl, path: ...}``, ``{type: sqlite, path: ..., table: ...}`` or
    ``{type: postgres, dsn: ..., table: ...}``."""
    max_bad_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_elapsed: Annotated[float, msgspec.Meta(gt=0)] | None = None
    sink_rate_limit: Annotated[float, msgspec.Meta(gt=0)] | None = None


class JobSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A whole job file."""

    source: dict[str, Any]
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.\-]+$")] | None = None
    description: str | None = None
    operators: list[Any] = msgspec.field(default_factory=list)
    sink: dict[str, Any] | None = None
    sinks: list[dict[str, Any]] | None = None
    sync: SyncSpec = msgspec.field(default_factory=SyncSpec)
    write: WriteSpec = msgspec.field(default_factory=WriteSpec)
    batch_size: Annotated[int, msgspec.Meta(gt=0)] | None = None
    checkpoint: dict[str, Any] | None = None
    channel_batches: Annotated[int, msgspec.Meta(gt=0)] | None = None
    channel_rows: Annotated[int, msgspec.Meta(gt=0)] | None = None
    errors: ErrorsSpec | None = None


_FIELDS = {
    "": JobSpec.__struct_fields__,
    "sync": SyncSpec.__struct_fields__,
    "write": WriteSpec.__struct_fields__,
    "errors": ErrorsSpec.__struct_fields__,
}
_CHOICES = {
    "sync_mode": ("full_refresh", "incremental", "cdc"),
    "write_mode": ("append", "overwrite", "upsert"),
    "conflict": ("skip", "overwrite", "merge", "fail"),
    "schema_policy": ("evolve", "freeze", "discard"),
    "on_bad_data": ("fail", "skip", "dead_letter"),
}


@dataclass
class Job:
    """A loaded, validated job file."""

    path: Path
    spec: JobSpec
    redact: Redactor = field(default_factory=Redactor)

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in the job resolve against."""
        return self.path.resolve().parent

    @property
    def name(self) -> str:
        """The pipeline name: checkpoints are kept under it."""
        return self.spec.name or self.path.stem

    def where(self, key_path: str) -> str:
        """``file: key.path``, the prefix of every error about this job."""
        return f"{self.path}: {key_path}" if key_path else str(self.path)


def _msgspec_error(path: Path, exc: msgspec.ValidationError) -> ConfigError:
    text = str(exc)
    m = re.match(r"^(.*) - at `\$(.*)`$", text, re.S)
    what, key = (m.group(1), m.group(2).lstrip(".")) if m else (text, "")
    unknown = re.match(r"Object contains unknown field `(.+)`", what)
    if unknown:
        name = unknown.group(1)
        valid = _FIELDS.get(key, ())
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        key = f"{key}.{name}" if key else name
        what = f"unknown key{hint} (valid keys: {', '.join(valid)})" if valid else "unknown key"
    missing = re.match(r"Object missing required field `(.+)`", what)
    if missing:
        key = f"{key}.{missing.group(1)}" if key else missing.group(1)
        what = "required key is missing"
    leaf = key.rsplit(".", 1)[-1]
    if what.startswith("Invalid enum value") and leaf in _CHOICES:
        bad = what.removeprefix("Invalid enum value").strip()
        close = difflib.get_close_matches(bad.strip("'"), _CHOICES[leaf], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        what = f"invalid value {bad}{hint}; expected one of {', '.join(_CHOICES[leaf])}"
    elif what.startswith("Expected"):
        what = "expected" + what.removeprefix("Expected").replace("`", "")
    return ConfigError(f"{path}: {key or '(top level)'}: {what}")


def parse_job(data: Any, path: Path, env: Mapping[str, str] | None = None) -> Job:
    """Validate an already parsed job document (``path`` names it in errors)."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise ConfigError(f"{path}: expected a mapping of job keys at the top level, got {got}")
    secrets: set[str] = set()
    try:
        data = substitute(data, os.environ if env is None else env, "", secrets)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    redact = Redactor(secrets)
    try:
        spec = msgspec.convert(data, JobSpec, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(redact(str(_msgspec_error(path, exc)))) from None
    if spec.sink is not None and spec.sinks is not None:
        raise ConfigError(f"{path}: sink: give either 'sink' or 'sinks', not both")
    if spec.sink is None and not spec.sinks:
        raise ConfigError(f"{path}: sink: required key is missing (or 'sinks': a list)")
    if spec.sync.sync_mode == "incremental" and spec.sync.cursor_field is None \
            and "cursor_field" not in spec.source \
            and "cursor_field" not in (spec.source.get("options") or {}):
        raise ConfigError(f"{path}: sync.cursor_field: required when sync_mode is incremental "
                          "(the column whose values only grow, e.g. updated_at)")
    return Job(path=path, spec=spec, redact=redact)


def load_job(path: str | Path, env: Mapping[str, str] | None = None) -> Job:
    """Read, substitute and validate a job file.

    :param env: the variables ``${VAR}`` reads (default: ``os.environ``).
    :raises ConfigError: naming the file, the key path and what was expected.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: job file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the job file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}: {where}invalid YAML: {problem}") from None
    return parse_job(data, p, env)
