"""Turn a validated :class:`~etlsync.jobs.spec.Job` into stages and a :class:`Pipeline`."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Mapping
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
from etlsync.operators import Cast, Filter, FilterExpr, Map, Rename, Select

# the option a built-in operator's shorthand form (``- select: [a, b]``) fills
_SHORTHAND = {"select": "columns", "rename": "mapping", "cast": "types", "filter": "expression"}
_MAPPING_SHORTHAND = ("rename", "cast")


@dataclass
class StagePlan:
    """What one stage of a built job is: for plans and ``--dry-run``."""

    kind: str
    type: str
    key_path: str
    options: dict[str, Any]


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
        """A JSON-able description of the job (secrets are masked by the caller)."""
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
                        "options": _jsonable(_mask_options(s.options))} for s in self.stages],
        }


_SECRET_NAMES = ("password", "passwd", "secret", "token", "api_key", "access_key",
                 "private_key", "credentials")
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):([^@/\s]+)@")


def _mask_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options as shown in plans: secret-named values hidden, passwords in URLs too (values
    from ``${VAR}`` are masked separately, in all output)."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if any(n in k.lower() for n in _SECRET_NAMES) and v not in (None, ""):
            out[k] = "***"
        elif isinstance(v, dict):
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


def _split_options(job: Job, spec: Mapping[str, Any], key_path: str,
                   factory: Callable[..., Any] | None = None
                   ) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(type, options, option -> key path) of a ``{type: ..., options...}`` mapping.

    An ``options:`` mapping is merged into the options, unless the stage itself has an
    option called ``options`` (then it is passed as is)."""
    type_name = _type_of(job, spec, key_path)
    own_options = factory is not None and "options" in _param_names(factory)
    opts: dict[str, Any] = {}
    paths: dict[str, str] = {}
    for k, v in spec.items():
        if k == "type":
            continue
        if k == "options" and not own_options:
            if not isinstance(v, dict):
                raise ConfigError(f"{job.where(key_path + '.options')}: expected a mapping")
            for ok, ov in v.items():
                if ok in opts:
                    raise ConfigError(f"{job.where(key_path + '.options.' + ok)}: given twice")
                opts[ok], paths[ok] = ov, f"{key_path}.options.{ok}"
            continue
        if k in opts:
            raise ConfigError(f"{job.where(key_path + '.' + k)}: given twice")
        opts[k], paths[k] = v, f"{key_path}.{k}"
    return type_name, opts, paths


def _resolve_paths(job: Job, opts: dict[str, Any]) -> None:
    for k, v in opts.items():
        if registry.is_path_option(k) and isinstance(v, str) and v and v != ":memory:" \
                and "://" not in v:
            p = Path(v).expanduser()
            opts[k] = str(p if p.is_absolute() else job.base_dir / p)


def _construct(job: Job, factory: Callable[..., Any], type_name: str, key_path: str,
               opts: dict[str, Any], paths: dict[str, str], positional: tuple[Any, ...] = ()
               ) -> Any:
    kw = registry.bind_options(factory, opts, job.where(key_path), positional=positional,
                               key_paths={k: job.where(p) for k, p in paths.items()})
    try:
        return factory(*positional, **kw)
    except ConfigError as exc:
        raise ConfigError(job.redact(f"{job.where(key_path)}: {exc}")) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(job.redact(f"{job.where(key_path)}: {type_name!r} rejected its "
                                     f"options: {exc}")) from None


# a job-wide setting -> the option names stages use for it, in order of preference
ALIASES: dict[str, tuple[str, ...]] = {
    "sync_mode": ("sync_mode",),
    "cursor_field": ("cursor_field",),
    "primary_key": ("primary_key", "key"),
    "batch_size": ("batch_size", "batch_rows", "max_batch_rows", "chunk_rows", "chunk_size"),
    "write_mode": ("write_mode",),
    "conflict": ("conflict",),
    "schema_policy": ("schema_policy",),
}


def _merge(job: Job, factory: Callable[..., Any], type_name: str, kind: str, opts: dict[str, Any],
           paths: dict[str, str], section: str, key: str, value: Any, default: Any,
           *, required: bool = True) -> None:
    """Pass a job-wide setting (``sync.*``, ``write.*``) to a stage that accepts it, under
    the stage's own name for it (``sync_mode`` or ``mode``)."""
    if value is None:
        return
    setting = f"{section}.{key}" if section else key
    names = ALIASES.get(key, (key,))
    for name in names:
        if name in opts:
            if opts[name] != value and not (isinstance(opts[name], list | tuple)
                                            and list(opts[name]) == list(value)):
                raise ConfigError(f"{job.where(paths[name])}: conflicts with {setting} "
                                  f"({opts[name]!r} vs {value!r}); give it once")
            return
    accepted = [n for n in names if n in _param_names(factory)]
    if accepted:  # never into **kwargs: those often go to a driver's connect()
        opts[accepted[0]], paths[accepted[0]] = value, setting
    elif required and value != default:
        raise ConfigError(f"{job.where(setting)}: {kind} type {type_name!r} does not "
                          f"support {key} (its options: "
                          f"{', '.join(_param_names(factory)) or 'none'})")


def _param_names(factory: Callable[..., Any]) -> list[str]:
    try:
        return [n for n, p in inspect.signature(factory).parameters.items()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)]
    except (TypeError, ValueError):
        return []


def build_source(job: Job) -> tuple[Source, StagePlan]:
    spec = job.spec
    type_name = _type_of(job, spec.source, "source")
    factory = registry.resolve("source", type_name, job.where("source.type"))
    _, opts, paths = _split_options(job, spec.source, "source", factory)
    sync = spec.sync
    _merge(job, factory, type_name, "source", opts, paths, "sync", "sync_mode", sync.sync_mode,
           "cdc" if has(factory, Capability.CDC) else "full_refresh")
    _merge(job, factory, type_name, "source", opts, paths, "sync", "cursor_field",
           sync.cursor_field, None)
    if sync.key is not None:
        _merge(job, factory, type_name, "source", opts, paths, "sync", "primary_key",
               list(sync.key), None, required=False)
    _merge(job, factory, type_name, "source", opts, paths, "", "batch_size", spec.batch_size,
           None, required=False)
    _resolve_paths(job, opts)
    source = _construct(job, factory, type_name, "source", opts, paths)
    return source, StagePlan("source", type_name, "source", opts)


def build_sink(job: Job, spec: Mapping[str, Any], key_path: str) -> tuple[Sink, StagePlan]:
    type_name = _type_of(job, spec, key_path)
    factory = registry.resolve("sink", type_name, job.where(key_path + ".type"))
    _, opts, paths = _split_options(job, spec, key_path, factory)
    w = job.spec.write
    for key, default in (("write_mode", "append"), ("conflict", "overwrite"),
                         ("schema_policy", "evolve")):
        _merge(job, factory, type_name, "sink", opts, paths, "write", key, getattr(w, key), default)
    pk = job.spec.sync.key
    if pk is not None:
        _merge(job, factory, type_name, "sink", opts, paths, "sync", "primary_key", list(pk), None,
               required=False)
    _resolve_paths(job, opts)
    sink = _construct(job, factory, type_name, key_path, opts, paths)
    return sink, StagePlan("sink", type_name, key_path, opts)


def build_operator(job: Job, entry: Any, index: int) -> tuple[Operator, StagePlan]:
    """One ``operators:`` entry: ``{kind: args}`` or ``{type: kind, option: ...}``."""
    key_path = f"operators[{index}]"
    if not isinstance(entry, dict) or not entry:
        raise ConfigError(f"{job.where(key_path)}: expected a mapping such as "
                          "{select: [a, b]} or {type: cast, types: {...}}")
    if "type" in entry:
        kind, opts, paths = _split_options(job, entry, key_path)
        args: Any = opts
    elif len(entry) == 1:
        kind, args = next(iter(entry.items()))
        key_path = f"{key_path}.{kind}"
        opts, paths = {}, {}
        if isinstance(args, dict):
            opts = dict(args)
            paths = {k: f"{key_path}.{k}" for k in opts}
    else:
        raise ConfigError(f"{job.where(key_path)}: an operator entry has one key (its kind), "
                          f"got {', '.join(map(str, entry))}")
    positional: tuple[Any, ...] = ()
    if kind in ("filter", "map"):
        factory, positional, opts = _callable_operator(job, kind, args, key_path)
        paths = {k: f"{key_path}.{k}" for k in opts}
    else:
        factory = registry.resolve("operator", str(kind), job.where(key_path))
        short = _SHORTHAND.get(str(kind))
        if isinstance(args, dict):
            if kind in _MAPPING_SHORTHAND and not isinstance(args.get(short), dict):
                positional, opts = (args,), {}
        elif args is not None:
            if short is None:
                raise ConfigError(f"{job.where(key_path)}: expected a mapping of options")
            positional, opts = (args,), {}
    op = _construct(job, factory, str(kind), key_path, opts, paths, positional)
    shown = dict(opts)
    if positional:
        shown[_SHORTHAND.get(str(kind), "args")] = positional[0]
    return op, StagePlan("operator", str(kind), key_path, shown)


def _callable_operator(job: Job, kind: str, args: Any, key_path: str
                       ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    if kind == "filter" and isinstance(args, str):
        return registry.resolve("operator", "filter", job.where(key_path)), (args,), {}
    if isinstance(args, str):
        args = {"callable": args}
    if not isinstance(args, dict):
        raise ConfigError(f"{job.where(key_path)}: expected an expression string or "
                          "{callable: 'module:function'}")
    opts = dict(args)
    if kind == "filter" and "callable" not in opts:
        if "expr" in opts:
            opts["expression"] = opts.pop("expr")
        return registry.resolve("operator", "filter", job.where(key_path)), (), opts
    target = opts.pop("callable", None)
    if not isinstance(target, str):
        raise ConfigError(f"{job.where(key_path + '.callable')}: expected 'module:function'")
    base = str(job.base_dir)
    if base not in sys.path:
        sys.path.append(base)  # modules beside the job file may hold its functions
    fn = registry.import_target(target, job.where(key_path + ".callable"), f"function {target!r}")
    if not callable(fn):
        raise ConfigError(f"{job.where(key_path + '.callable')}: {target!r} is not callable")
    return (Filter if kind == "filter" else Map), (fn,), opts


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
    factory = registry.resolve("checkpoint", type_name, job.where("checkpoint.type"))
    _, opts, paths = _split_options(job, spec, "checkpoint", factory)
    if type_name == "sqlite":
        opts.setdefault("path", DEFAULT_CHECKPOINT["path"])
    _resolve_paths(job, opts)
    store = _construct(job, factory, type_name, "checkpoint", opts, paths)
    return store, StagePlan("checkpoint", type_name, "checkpoint", opts)


_DEAD_LETTER_TYPES = {"jsonl": "JsonlDeadLetterSink", "sqlite": "SqliteDeadLetterSink",
                      "postgres": "PostgresDeadLetterSink"}


def build_error_policy(job: Job) -> tuple[Any, StagePlan | None]:
    """The job's :class:`~etlsync.resilience.ErrorPolicy` (``None`` without ``errors:``)."""
    spec = job.spec.errors
    if spec is None:
        return None, None
    from etlsync import resilience

    dead_letter = None
    plan: dict[str, Any] = {"on_bad_data": spec.on_bad_data}
    if spec.dead_letter is not None:
        type_name = _type_of(job, spec.dead_letter, "errors.dead_letter")
        if type_name not in _DEAD_LETTER_TYPES:
            raise ConfigError(f"{job.where('errors.dead_letter.type')}: expected one of "
                              f"{', '.join(_DEAD_LETTER_TYPES)}, got {type_name!r}")
        factory = getattr(resilience, _DEAD_LETTER_TYPES[type_name])
        _, opts, paths = _split_options(job, spec.dead_letter, "errors.dead_letter", factory)
        _resolve_paths(job, opts)
        dead_letter = _construct(job, factory, type_name, "errors.dead_letter", opts, paths)
        plan["dead_letter"] = {"type": type_name, **opts}
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
