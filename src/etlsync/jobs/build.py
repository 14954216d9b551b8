"""Turn a validated :class:`~etlsync.jobs.spec.Job` into stages and a :class:`Pipeline`.

Every stage's options are checked against its manifest's :class:`~etlsync.manifest.Options`
(or, for ad-hoc classes, its signature); job-wide settings (``sync:``, ``write:``,
``batch_size``) reach the stages under the same option names.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etlsync.core.capabilities import Capability, has
from etlsync.core.checkpoint import CheckpointStore
from etlsync.core.errors import ConfigError
from etlsync.core.pipeline import Pipeline
from etlsync.core.stages import Operator, Sink, Source, stage_name
from etlsync.jobs import registry
from etlsync.jobs.spec import DEFAULT_CHECKPOINT, Job
from etlsync.manifest import Kind, StageType
from etlsync.operators import Cast, Filter, FilterExpr, Rename, Select


@dataclass
class StagePlan:
    """What one stage of a built job is: for plans and ``--dry-run``."""

    kind: str
    type: str
    key_path: str
    options: dict[str, Any]
    secrets: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    """Options that hold file system paths."""


@dataclass
class BuiltJob:
    """The stages of a job, ready to run, and a description of each."""

    job: Job
    source: Source
    operators: list[Operator]
    sinks: list[Sink]
    checkpoint_store: CheckpointStore | None
    """``None``: the transactional sink's own store (see :func:`build_checkpoint`)."""
    stages: list[StagePlan] = field(default_factory=list)
    error_policy: Any = None
    """An :class:`~etlsync.resilience.ErrorPolicy` when the job has an ``errors:`` section."""

    def pipeline(self) -> Pipeline:
        """A :class:`Pipeline` running this job (named after it, checkpointed in its store)."""
        spec = self.job.spec
        kw: dict[str, Any] = {}
        if spec.channel_batches:
            kw["channel_batches"] = spec.channel_batches
        if spec.channel_rows:
            kw["channel_rows"] = spec.channel_rows
        if self.error_policy is not None:
            pipeline: Pipeline = self.error_policy.pipeline(
                self.source, self.operators, self.sinks, name=self.job.name,
                checkpoint_store=self.checkpoint_store, **kw)
            return pipeline
        return Pipeline(self.source, self.operators, self.sinks, name=self.job.name,
                        checkpoint_store=self.checkpoint_store, **kw)

    def plan(self) -> dict[str, Any]:
        """A JSON-able description of the job (secrets masked)."""
        spec = self.job.spec
        return {
            "job": str(self.job.path),
            "pipeline": self.job.name,
            "sync": {k: v for k, v in
                     {"sync_mode": spec.sync.sync_mode or (
                         "cdc" if has(self.source, Capability.CDC) else "full_refresh"),
                      "cursor_field": spec.sync.cursor_field,
                      "primary_key": list(spec.sync.key or ())}.items() if v},
            "write": {k: getattr(spec.write, k) for k in ("write_mode", "conflict", "schema_policy")
                      if getattr(spec.write, k) is not None},
            "stages": [{"kind": s.kind, "type": s.type, "key": s.key_path,
                        "options": _jsonable(_mask_options(s.options, s.secrets))}
                       for s in self.stages],
        }


_SECRET_NAMES = ("password", "passwd", "secret", "token", "api_key", "access_key",
                 "private_key", "credentials")
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):([^@/\s]+)@")


def _mask_options(options: Mapping[str, Any], secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Options as shown in plans: declared secrets and secret-named values hidden, passwords
    in URLs too (values from ``${VAR}`` are masked separately, in all output)."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if (k in secrets or any(n in k.lower() for n in _SECRET_NAMES)) and v not in (None, ""):
            out[k] = "***"
        elif isinstance(v, Mapping):
            out[k] = _mask_options(v)
        elif isinstance(v, str) and "://" in v:
            out[k] = _URL_PASSWORD.sub(r"\1:***@", v)
        else:
            out[k] = v
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    return getattr(value, "__qualname__", None) or repr(value)


def _type_of(job: Job, spec: Mapping[str, Any], key_path: str) -> str:
    type_name = spec.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise ConfigError(f"{job.where(key_path + '.type')}: required: the stage type as a string")
    return type_name


def _construct(job: Job, stage: StageType, options: dict[str, Any], key_path: str,
               key_paths: Mapping[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    """The stage made from ``options`` (validated by its options struct), and the options
    under their current names (old names moved, for plans)."""
    where = job.where(key_path)
    factory = stage.load(job.where(key_path + ".type"))
    options = dict(options)
    name = options.pop("name", None)  # every stage's own name (logs, metrics, errors)
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{where}.name: expected a string")
    options = stage.options.migrate(options, where)
    bound = stage.bind(options, where, {k: job.where(p) for k, p in (key_paths or {}).items()})
    try:
        args, kwargs = bound.arguments()
    except ConfigError as exc:
        raise ConfigError(job.redact(f"{where}.{exc}")) from None
    _, takes_any = registry.options_from_signature(factory) if stage.family == "adhoc" \
        else (None, False)
    if takes_any:  # a **kwargs factory without a manifest: unknown options pass through
        kwargs.update({k: v for k, v in options.items() if k not in kwargs and k not in args})
    try:
        made = factory(*args, **kwargs)
        if name:
            made.name = name
            options["name"] = name
        return made, options
    except ConfigError as exc:
        raise ConfigError(job.redact(f"{where}: {exc}")) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(job.redact(f"{where}: {stage.name!r} rejected its options: "
                                     f"{exc}")) from None


def _options(job: Job, spec: Mapping[str, Any], key_path: str, stage: StageType
             ) -> tuple[dict[str, Any], dict[str, str]]:
    """A stage mapping's options (without ``type``; those grouped under ``options:`` merged
    in) with relative paths resolved, and where each option grouped so was written."""
    opts = {k: v for k, v in spec.items() if k != "type"}
    paths: dict[str, str] = {}
    nested = opts.get("options")
    if isinstance(nested, Mapping) and "options" not in stage.options.__struct_fields__ \
            and "options" not in stage.options.renamed:
        del opts["options"]
        for k, v in nested.items():
            if k in opts:
                raise ConfigError(f"{job.where(f'{key_path}.options.{k}')}: given twice")
            opts[k], paths[k] = v, f"{key_path}.options.{k}"
    for k in stage.options.paths:
        v = opts.get(k)
        if isinstance(v, str) and v and v != ":memory:" and "://" not in v:
            p = Path(v).expanduser()
            opts[k] = str(p if p.is_absolute() else job.base_dir / p)
    return opts, paths


def _setting(job: Job, stage: StageType, key_path: str, opts: dict[str, Any], setting: str,
             option: str, value: Any, default: Any, *, required: bool = True) -> None:
    """Give a job-wide setting (``sync.sync_mode``, ``batch_size``, ...) to a stage that takes
    the option; one the stage cannot take is an error unless it is the default."""
    if value is None:
        return
    if option in opts:
        given = opts[option]
        same = given == value or (isinstance(given, list | tuple) and isinstance(value, list)
                                  and list(given) == value) or (
            isinstance(given, str) and value == [given])
        if not same:
            raise ConfigError(f"{job.where(f'{key_path}.{option}')}: conflicts with {setting} "
                              f"({given!r} vs {value!r}); give it once")
        return
    if option in stage.options.__struct_fields__:
        opts[option] = value
    elif required and value != default:
        raise ConfigError(f"{job.where(setting)}: {stage.kind} type {stage.name!r} does not take "
                          f"{option} (its options: {', '.join(stage.options.__struct_fields__)})")


def build_source(job: Job) -> tuple[Source, StagePlan]:
    spec, sync = job.spec, job.spec.sync
    type_name = _type_of(job, spec.source, "source")
    stage = registry.resolve("source", type_name, job.where("source.type"))
    opts, paths = _options(job, spec.source, "source", stage)
    cdc = Capability.CDC in stage.capabilities
    if sync.sync_mode == "cdc" and not cdc:
        raise ConfigError(f"{job.where('sync.sync_mode')}: source type {type_name!r} does not "
                          "stream changes (cdc); use a *_cdc source")
    if sync.sync_mode != "cdc":
        _setting(job, stage, "source", opts, "sync.sync_mode", "sync_mode", sync.sync_mode,
                 "cdc" if cdc else "full_refresh")
    _setting(job, stage, "source", opts, "sync.cursor_field", "cursor_field", sync.cursor_field, None)
    if sync.key is not None:
        _setting(job, stage, "source", opts, "sync.primary_key", "primary_key", list(sync.key), None,
                 required=False)
    _setting(job, stage, "source", opts, "batch_size", "batch_size", spec.batch_size, None)
    source, opts = _construct(job, stage, opts, "source", paths)
    return source, StagePlan("source", type_name, "source", opts, stage.options.secrets,
                     stage.options.paths)


def build_sink(job: Job, spec: Mapping[str, Any], key_path: str) -> tuple[Sink, StagePlan]:
    type_name = _type_of(job, spec, key_path)
    stage = registry.resolve("sink", type_name, job.where(key_path + ".type"))
    opts, paths = _options(job, spec, key_path, stage)
    w = job.spec.write
    for key, default in (("write_mode", "append"), ("conflict", "overwrite"),
                         ("schema_policy", "evolve")):
        _setting(job, stage, key_path, opts, f"write.{key}", key, getattr(w, key), default)
    if job.spec.sync.key is not None:
        _setting(job, stage, key_path, opts, "sync.primary_key", "primary_key", list(job.spec.sync.key),
                 None, required=False)
    sink, opts = _construct(job, stage, opts, key_path, paths)
    return sink, StagePlan("sink", type_name, key_path, opts, stage.options.secrets,
                     stage.options.paths)


def build_operator(job: Job, entry: Any, index: int) -> tuple[Operator, StagePlan]:
    """One ``operators:`` entry: ``{kind: args}`` or ``{type: kind, option: ...}``."""
    key_path = f"operators[{index}]"
    if not isinstance(entry, dict) or not entry:
        raise ConfigError(f"{job.where(key_path)}: expected a mapping such as "
                          "{select: [a, b]} or {type: cast, types: {...}}")
    if "type" in entry:
        kind = _type_of(job, entry, key_path)
        stage = registry.resolve("operator", kind, job.where(key_path + ".type"))
        opts, _ = _options(job, entry, key_path, stage)
    elif len(entry) == 1:
        kind, args = next(iter(entry.items()))
        key_path = f"{key_path}.{kind}"
        stage = registry.resolve("operator", str(kind), job.where(key_path))
        fields = stage.options.__struct_fields__
        if isinstance(args, dict) and (set(args) <= set(fields) or stage.shorthand in args
                                       or bool(set(args) & set(stage.options.renamed))):
            opts = dict(args)  # {cast: {types: {...}, on_error: skip}}
        elif args is None or stage.shorthand is None:
            raise ConfigError(f"{job.where(key_path)}: expected a mapping of options "
                              f"({', '.join(fields)})")
        else:
            opts = {stage.shorthand: args}
    else:
        raise ConfigError(f"{job.where(key_path)}: an operator entry has one key (its kind), "
                          f"got {', '.join(map(str, entry))}")
    base = str(job.base_dir)
    if base not in sys.path:
        sys.path.append(base)  # modules beside the job file may hold its functions
    op, opts = _construct(job, stage, opts, key_path)
    return op, StagePlan("operator", stage.name, key_path, opts, stage.options.secrets,
                     stage.options.paths)


def build_checkpoint(job: Job, sinks: list[Sink] | None = None
                     ) -> tuple[CheckpointStore | None, StagePlan]:
    """The job's checkpoint store. Without a ``checkpoint:`` section a job whose sink is
    ``TRANSACTIONAL`` keeps its checkpoint in that sink's own transactions (``None``: the
    pipeline takes the sink's store; exactly-once); otherwise the default SQLite file."""
    if job.spec.checkpoint is None and sinks:
        owner = next((s for s in sinks if has(s, Capability.TRANSACTIONAL)), None)
        if owner is not None:
            store = owner.checkpoint_store()
            where = store.location if store is not None else None
            return None, StagePlan("checkpoint", "sink", "checkpoint",
                                   {"in": stage_name(owner), "location": where})
    spec = job.spec.checkpoint if job.spec.checkpoint is not None else dict(DEFAULT_CHECKPOINT)
    type_name = _type_of(job, spec, "checkpoint")
    stage = registry.resolve("checkpoint", type_name, job.where("checkpoint.type"))
    opts, paths = _options(job, spec, "checkpoint", stage)
    if type_name == "sqlite" and "path" not in opts:
        opts["path"] = str(job.base_dir / DEFAULT_CHECKPOINT["path"])
    store, opts = _construct(job, stage, opts, "checkpoint", paths)
    return store, StagePlan("checkpoint", type_name, "checkpoint", opts, stage.options.secrets,
                     stage.options.paths)


def build_error_policy(job: Job) -> tuple[Any, StagePlan | None]:
    """The job's :class:`~etlsync.resilience.ErrorPolicy` (``None`` without ``errors:``)."""
    spec = job.spec.errors
    if spec is None:
        return None, None
    from etlsync import resilience

    dead_letter = None
    plan: dict[str, Any] = {"on_bad_data": spec.on_bad_data}
    if spec.dead_letter is not None:
        key = "errors.dead_letter"
        type_name = _type_of(job, spec.dead_letter, key)
        stage = registry.resolve(Kind.DEAD_LETTER, type_name, job.where(key + ".type"))
        opts, paths = _options(job, spec.dead_letter, key, stage)
        dead_letter, opts = _construct(job, stage, opts, key, paths)
        plan["dead_letter"] = {"type": type_name, **_mask_options(opts, stage.options.secrets)}
    elif spec.on_bad_data == "dead_letter":
        raise ConfigError(f"{job.where('errors.dead_letter')}: on_bad_data: dead_letter needs a "
                          "dead_letter sink, e.g. {type: jsonl, path: dead_letters.jsonl}")
    retry = resilience.RetryPolicy()
    if spec.max_attempts is not None:
        retry.max_attempts = spec.max_attempts
    if spec.max_elapsed is not None:
        retry.max_elapsed = spec.max_elapsed
    policy = resilience.ErrorPolicy(on_bad_data=spec.on_bad_data, dead_letter=dead_letter,
                                    max_bad_ratio=spec.max_bad_ratio, retry=retry,
                                    sink_rate_limit=spec.sink_rate_limit)
    for key in ("max_bad_ratio", "max_attempts", "max_elapsed", "sink_rate_limit"):
        if getattr(spec, key) is not None:
            plan[key] = getattr(spec, key)
    return policy, StagePlan("errors", spec.on_bad_data, "errors", plan)


def build_job(job: Job) -> BuiltJob:
    """Construct every stage of ``job`` (nothing connects or writes yet).

    :raises ConfigError: naming the file and key path of the first invalid setting.
    """
    source, splan = build_source(job)
    ops_and_plans = [build_operator(job, e, i) for i, e in enumerate(job.spec.operators)]
    if job.spec.sinks is not None:
        sinks_and_plans = [build_sink(job, s, f"sinks[{i}]") for i, s in enumerate(job.spec.sinks)]
    else:
        assert job.spec.sink is not None
        sinks_and_plans = [build_sink(job, job.spec.sink, "sink")]
    store, cplan = build_checkpoint(job, [s for s, _ in sinks_and_plans])
    policy, eplan = build_error_policy(job)
    stages = [splan, *(p for _, p in ops_and_plans), *(p for _, p in sinks_and_plans), cplan]
    if eplan is not None:
        stages.append(eplan)
    return BuiltJob(job, source, fuse([o for o, _ in ops_and_plans]),
                    [s for s, _ in sinks_and_plans], store, stages, policy)


def fuse(operators: list[Operator]) -> list[Operator]:
    """The same transformation with less copying: ``select`` then ``rename`` become one
    step, and ``cast`` converts in place rows that an earlier ``select``, ``rename`` or
    ``cast`` made (no one else holds them; filters between keep the same row objects)."""
    out: list[Operator] = []
    fresh = False  # the rows reaching this point were made by an earlier operator
    for op in operators:
        prev = out[-1] if out else None
        if type(op) is Rename and type(prev) is Select:
            out[-1] = prev.then_rename(op)
            continue
        if type(op) is Cast and fresh:
            op.copy = False
        out.append(op)
        fresh = type(op) in (Select, Rename, Cast) or (fresh and type(op) in (Filter, FilterExpr))
    return out
