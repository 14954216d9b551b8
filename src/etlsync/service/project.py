"""The project file: the jobs ``etlsync serve`` runs, their schedules, triggers, dependencies,
queue limits, alert channels and the state database (docs/serve.md describes the format)."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from etlsync.core.errors import ConfigError
from etlsync.jobs.build import BuiltJob, build_job
from etlsync.jobs.env import Redactor, substitute
from etlsync.jobs.spec import Job, parse_job
from etlsync.service.graph import JobGraph
from etlsync.service.schedule import Cron, Interval, Misfire, Schedule

PROJECT_FILES = ("etlsync-project.yaml", "etlsync-project.yml", "project.yaml")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*([smhdw]))+\s*$")
Duration = str | float | int


def seconds(value: Duration | None, where: str) -> float | None:
    """``"90s"``, ``"15m"``, ``"1h30m"``, ``"7d"`` or a number of seconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{where}: a duration cannot be negative")
        return float(value)
    if isinstance(value, str) and _DURATION.match(value):
        return float(sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])",
                                                                      value)))
    raise ConfigError(f"{where}: invalid duration {value!r} (expected e.g. 90s, 15m, 1h30m, 7d "
                      "or a number of seconds)")


class _Spec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    pass


class ScheduleSpec(_Spec):
    cron: str | None = None
    every: Duration | None = None
    timezone: str = "UTC"
    continuous: bool = False


class TriggerSpec(_Spec):
    type: Literal["files", "http", "job", "message"]
    path: str | None = None
    pattern: str = "*"
    recursive: bool = False
    job: str | None = None
    on: list[Literal["succeeded", "failed", "any"]] = msgspec.field(
        default_factory=lambda: ["succeeded"])
    source: dict[str, Any] | None = None


class RetrySpec(_Spec):
    max_attempts: Annotated[int, msgspec.Meta(ge=0)] = 0
    backoff: Duration = "10s"
    max_backoff: Duration = "10m"


class JobEntrySpec(_Spec):
    file: str | None = None
    schedule: ScheduleSpec | None = None
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace: Duration = "60s"
    max_catch_up: Annotated[int, msgspec.Meta(ge=1)] = 100
    priority: int = 0
    resources: list[str] = msgspec.field(default_factory=list)
    max_run_time: Duration | None = None
    depends_on: list[str] = msgspec.field(default_factory=list)
    triggers: list[TriggerSpec] = msgspec.field(default_factory=list)
    retries: RetrySpec = msgspec.field(default_factory=RetrySpec)
    journal: bool | None = None
    enabled: bool = True


class RetentionSpec(_Spec):
    runs: Duration = "90d"
    logs: Duration = "30d"
    journal: Duration = "7d"


class StateSpec(_Spec):
    url: str | None = None
    schema: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    lease_ttl: Duration = "30s"
    heartbeat: Duration = "5s"
    retention: RetentionSpec = msgspec.field(default_factory=RetentionSpec)


class QueueSpec(_Spec):
    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 4
    resources: dict[str, Annotated[int, msgspec.Meta(ge=1)]] = msgspec.field(
        default_factory=dict)


class HttpSpec(_Spec):
    listen: str = "127.0.0.1:8765"
    token_env: str = "ETLSYNC_SERVE_TOKEN"
    token_file: str | None = None


class ChannelSpec(_Spec):
    type: Literal["webhook", "slack", "email"]
    url: str | None = None
    url_env: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout: Duration = "10s"
    host: str | None = None
    port: int | None = None
    tls: Literal["starttls", "ssl", "none"] = "starttls"
    user: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    sender: str | None = None
    to: list[str] = msgspec.field(default_factory=list)


AlertKind = Literal["failure", "timeout", "recovery", "lag", "dead_letters"]


class AlertsSpec(_Spec):
    channels: list[ChannelSpec] = msgspec.field(default_factory=list)
    on: list[AlertKind] = msgspec.field(
        default_factory=lambda: ["failure", "timeout", "recovery", "lag", "dead_letters"])
    fold: Duration = "1h"
    lag: Duration | None = None
    dead_letter_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None


class ProjectSpec(_Spec):
    name: str | None = None
    jobs_dir: str = "jobs"
    jobs: dict[str, JobEntrySpec] = msgspec.field(default_factory=dict)
    state: StateSpec = msgspec.field(default_factory=StateSpec)
    queue: QueueSpec = msgspec.field(default_factory=QueueSpec)
    http: HttpSpec | None = None
    alerts: AlertsSpec | None = None


_TEMPLATE = re.compile(r"(?<!\$)\$\{((?:run|trigger|upstream)\.[A-Za-z0-9_.\-]+)\}")


def render_templates(value: Any, context: Mapping[str, Any], where: str) -> Any:
    """``value`` with every ``${run.x}``, ``${trigger.x}``, ``${upstream.job.x}`` replaced
    from ``context`` (nested mappings); environment references are left for the job layer."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            found: Any = context
            for part in m.group(1).split("."):
                if not isinstance(found, Mapping) or part not in found:
                    raise ConfigError(f"{where}: ${{{m.group(1)}}} is not set for this run "
                                      f"(known: {', '.join(_paths(context))})")
                found = found[part]
            return "" if found is None else str(found)
        return _TEMPLATE.sub(repl, value)
    if isinstance(value, dict):
        return {k: render_templates(v, context, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_templates(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _paths(context: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in context.items():
        name = f"{prefix}{k}"
        out.extend(_paths(v, name + ".") if isinstance(v, Mapping) else [name])
    return out


@dataclass
class JobEntry:
    """One job of a project: its file, schedule and settings (durations in seconds)."""

    name: str
    path: Path
    spec: JobEntrySpec
    schedule: Schedule | None
    continuous: bool
    data: Any
    """The job file's parsed YAML (templates not yet rendered)."""
    templated: bool
    max_run_time: float | None
    misfire_grace: float
    reversible: bool = False
    """Every sink of the job can record and revert a run (``REVERSIBLE``)."""

    @property
    def journal(self) -> bool:
        """Whether runs record what they change (so they can be rolled back)."""
        if self.spec.journal is not None:
            return self.spec.journal and self.reversible
        return self.reversible and not self.continuous

    def load(self, context: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Job:
        """The job for one run: templates rendered from ``context``, variables substituted."""
        data = render_templates(copy.deepcopy(self.data), context, str(self.path)) \
            if self.templated else self.data
        job = parse_job(data, self.path, env)
        if job.spec.name is None:
            job.spec.name = self.name
        elif job.spec.name != self.name:
            raise ConfigError(f"{self.path}: name: {job.spec.name!r} differs from the project's "
                              f"job name {self.name!r} (drop it, or use the same name)")
        return job

    def build(self, context: Mapping[str, Any], env: Mapping[str, str] | None = None) -> BuiltJob:
        return build_job(self.load(context, env))


@dataclass
class Project:
    """A loaded, validated project."""

    path: Path
    """The project file."""
    spec: ProjectSpec
    jobs: dict[str, JobEntry]
    graph: JobGraph
    redact: Redactor = field(default_factory=Redactor)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def name(self) -> str:
        return self.spec.name or self.root.name

    def job(self, name: str) -> JobEntry:
        try:
            return self.jobs[name]
        except KeyError:
            raise ConfigError(f"no job {name!r} in project {self.name!r} (jobs: "
                              f"{', '.join(sorted(self.jobs))})") from None

    def state_store(self) -> Any:
        """The project's state database (:class:`~etlsync.service.state.StateStore`)."""
        from etlsync.service.state import open_state

        s = self.spec.state
        return open_state(s.url, self.root, password_env=s.password_env,
                          password_file=s.password_file, sslmode=s.sslmode,
                          sslrootcert=s.sslrootcert, schema=s.schema)

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p


def find_project_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        for name in PROJECT_FILES:
            if (p / name).is_file():
                return p / name
        raise ConfigError(f"{p}: no project file ({' or '.join(PROJECT_FILES)}) in this folder")
    if not p.is_file():
        raise ConfigError(f"{p}: project not found")
    return p


def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc}") from None


def load_project(path: str | Path, env: Mapping[str, str] | None = None, *,
                 validate_jobs: bool = True) -> Project:
    """Read and validate a project (a folder holding a project file, or the file).

    Every job file is loaded and built (options checked, nothing connected); dependencies
    must name known jobs and form no cycle.

    :raises ConfigError: naming the file and key of the first problem.
    """
    file = find_project_file(path)
    env = os.environ if env is None else env
    raw = _read_yaml(file, "project file")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level")
    secrets: set[str] = set()
    try:
        raw = substitute(raw, env, "", secrets)
        jobs_raw = raw.pop("jobs", None) or {}
        if not isinstance(jobs_raw, dict):
            raise ConfigError("jobs: expected a mapping of job names to their settings")
        spec = msgspec.convert(raw, ProjectSpec, strict=False)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{file}: {_where(exc)}") from None
    for name, entry_raw in jobs_raw.items():
        try:
            spec.jobs[str(name)] = msgspec.convert(entry_raw or {}, JobEntrySpec, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{file}: {_where(exc, f'jobs.{name}')}") from None
    root = file.parent
    entries = dict(spec.jobs)
    jobs_dir = root / spec.jobs_dir
    if jobs_dir.is_dir():  # job files not listed run on demand (HTTP, API)
        for f in sorted(jobs_dir.glob("*.y*ml")):
            entries.setdefault(f.stem, JobEntrySpec(file=str(f.relative_to(root))))
    jobs = {name: _entry(file, root, spec, name, entry, env, validate_jobs)
            for name, entry in entries.items() if entry.enabled}
    completion = {name: [t.job for t in e.spec.triggers if t.type == "job" and t.job]
                  for name, e in jobs.items()}
    for name, entry in jobs.items():
        for dep in [*entry.spec.depends_on, *completion[name]]:
            if dep not in jobs:
                raise ConfigError(f"{file}: jobs.{name}: depends on unknown job {dep!r} "
                                  f"(jobs: {', '.join(sorted(jobs))})")
    try:
        graph = JobGraph({n: e.spec.depends_on for n, e in jobs.items()},
                         {n: [j for j in c if j] for n, c in completion.items()})
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    for res in {r for e in jobs.values() for r in e.spec.resources}:
        if res not in spec.queue.resources:
            raise ConfigError(f"{file}: a job uses resource {res!r}, which queue.resources does "
                              f"not define (defined: {', '.join(sorted(spec.queue.resources))})")
    return Project(file, spec, jobs, graph, Redactor(secrets))


def _where(exc: msgspec.ValidationError, prefix: str = "") -> str:
    text = str(exc)
    m = re.match(r"^(.*) - at `\$(.*)`$", text, re.S)
    what, key = (m.group(1), m.group(2).lstrip(".")) if m else (text, "")
    key = ".".join(k for k in (prefix, key) if k)
    unknown = re.match(r"Object contains unknown field `(.+)`", what)
    if unknown:
        return f"{key + '.' if key else ''}{unknown.group(1)}: unknown key"
    return f"{key or '(top level)'}: {what}"


def _entry(file: Path, root: Path, project: ProjectSpec, name: str, spec: JobEntrySpec,
           env: Mapping[str, str], validate: bool) -> JobEntry:
    where = f"{file}: jobs.{name}"
    if not re.match(r"^[A-Za-z0-9_.\-]+$", name):
        raise ConfigError(f"{where}: a job name has letters, digits and _ . - only")
    path = root / (spec.file or f"{project.jobs_dir}/{name}.yaml")
    data = _read_yaml(path, "job file")
    schedule: Schedule | None = None
    continuous = False
    s = spec.schedule
    if s is not None:
        given = [k for k in ("cron", "every") if getattr(s, k) is not None] + \
            (["continuous"] if s.continuous else [])
        if len(given) != 1:
            raise ConfigError(f"{where}.schedule: give exactly one of cron, every, continuous")
        try:
            if s.cron is not None:
                schedule = Cron(s.cron, s.timezone)
            elif s.every is not None:
                schedule = Interval(seconds(s.every, f"{where}.schedule.every") or 0)
        except ConfigError as exc:
            raise ConfigError(f"{where}.schedule: {exc}") from None
        continuous = s.continuous
    for i, t in enumerate(spec.triggers):
        if t.type == "files" and not t.path:
            raise ConfigError(f"{where}.triggers[{i}].path: required for a files trigger")
        if t.type == "job" and not t.job:
            raise ConfigError(f"{where}.triggers[{i}].job: required for a job trigger")
        if t.type == "message" and not t.source:
            raise ConfigError(f"{where}.triggers[{i}].source: required for a message trigger "
                              "(an etlsync source, e.g. {type: kafka, ...})")
    for key in ("backoff", "max_backoff"):
        seconds(getattr(spec.retries, key), f"{where}.retries.{key}")
    entry = JobEntry(name, path, spec, schedule, continuous, data,
                     templated=bool(_TEMPLATE.search(yaml.safe_dump(data))),
                     max_run_time=seconds(spec.max_run_time, f"{where}.max_run_time"),
                     misfire_grace=seconds(spec.misfire_grace, f"{where}.misfire_grace") or 0.0)
    if validate:
        built = entry.build(sample_context(name), env)
        from etlsync.core.revert import reversible
        entry.reversible = all(reversible(s) is not None for s in built.sinks)
    return entry


def sample_context(job: str) -> dict[str, Any]:
    """A run context with every standard variable, for validating templated jobs at load."""
    return {"run": {"id": "validate", "job": job, "trigger": "validate", "attempt": 1,
                    "scheduled_for": "1970-01-01T00:00:00+00:00",
                    "window_start": "1970-01-01T00:00:00+00:00",
                    "window_end": "1970-01-01T00:00:00+00:00",
                    "window_start_epoch": 0, "window_end_epoch": 0},
            "trigger": _AnyKeys(), "upstream": _AnyKeys()}


class _AnyKeys(dict[str, Any]):
    """Any key is present (trigger and upstream values are only known per run)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        return _AnyKeys()

    def __str__(self) -> str:
        return "x"
