"""Running a job, and ``--dry-run``: the plan, the schemas and the first rows, writing nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from etlsync.core.batch import Row
from etlsync.core.metrics import RunSummary
from etlsync.core.pipeline import Pipeline
from etlsync.core.schema import Schema
from etlsync.core.stages import Operator
from etlsync.jobs.build import BuiltJob, StagePlan, build_job
from etlsync.jobs.spec import Job, load_job
from etlsync.progress import Progress


@dataclass
class JobResult:
    """The outcome of a job run: the pipeline's summary and the rows operators dropped."""

    summary: RunSummary
    rows_rejected: int = 0
    """Rows dropped because a value was invalid (``cast`` with ``on_error: skip``)."""
    rows_filtered: int = 0
    """Rows dropped by filters."""

    def to_dict(self) -> dict[str, Any]:
        s = self.summary
        return {
            "pipeline": s.pipeline, "status": s.status, "rows_read": s.rows_read,
            "rows_written": s.rows_written, "rows_rejected": self.rows_rejected,
            "rows_filtered": self.rows_filtered, "seconds": round(s.duration_seconds, 4),
            "rows_per_s": round(s.rows_per_second, 1), "commits": s.commits,
            "committed_position": s.committed_position, "error": s.error,
        }

    def to_json(self) -> str:
        return msgspec.json.encode(self.to_dict(), enc_hook=str).decode()

    def __str__(self) -> str:
        s = self.summary
        return (f"{s.pipeline}: {s.status}: {s.rows_read:,} rows read, {s.rows_written:,} "
                f"written, {self.rows_rejected:,} rejected, {self.rows_filtered:,} filtered "
                f"in {s.duration_seconds:.2f}s ({s.rows_per_second:,.0f} rows/s)")


def _result(summary: RunSummary, operators: list[Operator]) -> JobResult:
    rejected = sum(int(getattr(op, "rejected", 0)) for op in operators)
    # rows the error policy isolated (dead-lettered or skipped), counted once per stage
    rejected += sum(int(m.extra.get("bad_rows", 0)) for m in summary.stages.values())
    dropped = sum(m.rows_in - m.rows_out for k, m in summary.stages.items() if k.startswith("op:"))
    return JobResult(summary, rejected, max(dropped - rejected, 0))


def _prepare_dirs(built: BuiltJob) -> None:
    for stage in built.stages:
        if stage.kind not in ("sink", "checkpoint"):
            continue
        for k in stage.paths:
            v = stage.options.get(k)
            if isinstance(v, str) and v != ":memory:" and "://" not in v:
                Path(v).parent.mkdir(parents=True, exist_ok=True)


async def run_built(built: BuiltJob, *, progress: bool = False) -> JobResult:
    """Run a built job; with ``progress`` draw a progress bar on a terminal (stderr)."""
    return await run_pipeline(built, built.pipeline(), progress=progress)


async def run_pipeline(built: BuiltJob, pipeline: Pipeline, *, progress: bool = False,
                       handle_signals: bool | None = None) -> JobResult:
    """Run ``pipeline`` (made by ``built.pipeline()``, observers added or stopped by the
    caller, as ``etlsync serve`` does) and count what the job's operators dropped."""
    _prepare_dirs(built)
    async with Progress(pipeline, enabled=progress):
        summary = await pipeline.run(handle_signals=handle_signals)
    return _result(summary, built.operators)


async def run_job(job: str | Path | Job, *, env: Mapping[str, str] | None = None,
                  progress: bool = False) -> JobResult:
    """Load, build and run a job file.

    :raises ConfigError: the job is invalid (names the file and key path).
    :raises StageError: a stage failed while running (names the stage).
    """
    loaded = job if isinstance(job, Job) else load_job(job, env)
    return await run_built(build_job(loaded), progress=progress)


@dataclass
class DryRun:
    """What ``etlsync run --dry-run`` shows."""

    plan: dict[str, Any]
    resume_from: Any = None
    source_schemas: dict[str, Schema] = field(default_factory=dict)
    output_schemas: dict[str, Schema] = field(default_factory=dict)
    target_schemas: list[tuple[str, Schema | None]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan, "resume_from": self.resume_from,
            "source_schemas": {k: _schema_dict(v) for k, v in self.source_schemas.items()},
            "output_schemas": {k: _schema_dict(v) for k, v in self.output_schemas.items()},
            "target_schemas": {k: None if v is None else _schema_dict(v)
                               for k, v in self.target_schemas},
            "rows": self.rows, "notes": self.notes,
        }

    def to_json(self) -> str:
        return msgspec.json.encode(self.to_dict(), enc_hook=str).decode()


def _schema_dict(schema: Schema) -> dict[str, Any]:
    return {"columns": [{"name": c.name, "type": c.type.value, "nullable": c.nullable,
                         **({"native": c.native} if c.native else {})} for c in schema.columns],
            "primary_key": list(schema.primary_key)}


def _missing_file(stage: StagePlan) -> str | None:
    for k in stage.paths:
        v = stage.options.get(k)
        if isinstance(v, str) and v != ":memory:" and "://" not in v and not Path(v).exists():
            return v
    return None


async def dry_run(built: BuiltJob, limit: int = 10) -> DryRun:
    """Describe ``built`` and read its first ``limit`` rows through the operators, without
    writing anything (the pipeline's preview mode: no sink is opened, no checkpoint
    committed, no file created)."""
    result = DryRun(plan=built.plan())
    pipeline = built.pipeline()
    preview = await pipeline.preview(limit)
    result.resume_from = preview.resume_from
    result.source_schemas = preview.source_schemas
    result.output_schemas = preview.output_schemas
    result.rows = preview.rows
    result.notes = list(preview.notes)
    sink_plans = [s for s in built.stages if s.kind == "sink"]
    for plan, target in zip(sink_plans, preview.target_schemas.values(), strict=True):
        result.target_schemas.append((plan.key_path, target))
        absent = _missing_file(plan)
        if absent is not None:
            result.notes.append(f"{plan.key_path}: {absent} does not exist yet (created on run)")
    return result


def format_schema(schema: Schema | None, indent: str = "    ") -> list[str]:
    if schema is None:
        return [f"{indent}(unknown)"]
    width = max((len(c.name) for c in schema.columns), default=0)
    lines = []
    for c in schema.columns:
        pk = "  primary key" if c.name in schema.primary_key else ""
        native = f"  ({c.native})" if c.native else ""
        null = "" if c.nullable else "  not null"
        lines.append(f"{indent}{c.name:<{width}}  {c.type.value}{native}{null}{pk}")
    return lines or [f"{indent}(no columns)"]


def format_dry_run(dr: DryRun) -> str:
    """The human-readable ``--dry-run`` report."""
    p = dr.plan
    out = [f"job {p['job']}  (pipeline {p['pipeline']!r})", "plan:"]
    for s in p["stages"]:
        opts = ", ".join(f"{k}={_short(v)}" for k, v in s["options"].items())
        out.append(f"  {s['kind']:<10} {s['type']:<12} {opts}")
    out.append("sync:  " + (", ".join(f"{k}={v}" for k, v in p["sync"].items()) or "-"))
    out.append("write: " + (", ".join(f"{k}={v}" for k, v in p["write"].items()) or "-"))
    start = "the beginning" if dr.resume_from is None else _short(dr.resume_from, 200)
    out.append(f"resume from: {start}")
    for stream, schema in dr.source_schemas.items():
        out.append(f"source schema ({stream}):")
        out.extend(format_schema(schema))
        if stream in dr.output_schemas and dr.output_schemas[stream] != schema:
            out.append(f"after operators ({stream}):")
            out.extend(format_schema(dr.output_schemas[stream]))
    for key, target in dr.target_schemas:
        out.append(f"target schema ({key}):")
        out.extend(format_schema(target) if target is not None else ["    (does not exist yet)"])
    out.append(f"first {len(dr.rows)} row(s) after operators:")
    out.extend(f"  {_row_text(r)}" for r in dr.rows)
    out.extend(f"note: {n}" for n in dr.notes)
    out.append("dry run: nothing was written")
    return "\n".join(out)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _row_text(row: Row) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in row.items()) + "}"

