"""Every manifest says what its stage constructors take, with the same defaults; the JSON
Schema made from them accepts the example jobs and refuses bad ones."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import yaml

from etlsync.catalog import CATALOG, register
from etlsync.core.capabilities import Capability
from etlsync.jobs.schema import job_schema
from etlsync.manifest import Kind, Manifest, Options, StageType

ROOT = Path(__file__).resolve().parents[2]
STAGES = sorted(CATALOG.all(), key=lambda s: (s.kind, s.name))


def _default(options: type[Options], name: str) -> Any:
    for f in msgspec.structs.fields(options):
        if f.name == name:
            if f.default_factory is not msgspec.NODEFAULT:
                return f.default_factory()
            return f.default
    raise KeyError(name)


def _parameters(factory: Any) -> dict[str, inspect.Parameter]:
    """The constructor's parameters, following ``**kwargs`` up to the base classes."""
    params: dict[str, inspect.Parameter] = {}
    classes = factory.__mro__ if inspect.isclass(factory) else (factory,)
    for cls in classes:
        target = cls.__init__ if inspect.isclass(factory) else cls
        if inspect.isclass(factory) and "__init__" not in cls.__dict__:
            continue
        found = inspect.signature(target).parameters
        for name, p in found.items():
            params.setdefault(name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in found.values()):
            break
    return params


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: f"{s.kind}:{s.name}")
def test_options_are_the_constructors_parameters_with_its_defaults(stage: StageType) -> None:
    if "arguments" in stage.options.__dict__:
        return  # options translated by the manifest itself (map, filter): checked by use
    params = _parameters(stage.load())
    for field in stage.options.__struct_fields__:
        assert field in params, f"{stage.kind} {stage.name}: option {field!r} is no parameter"
        p = params[field]
        default = _default(stage.options, field)
        if default is msgspec.NODEFAULT:
            assert p.default is p.empty, f"{stage.name}.{field}: required here, optional there"
        elif p.default is not p.empty:
            want = p.default.value if hasattr(p.default, "value") else p.default
            if isinstance(want, tuple):
                want = list(want)
            got = list(default) if isinstance(default, tuple) else default
            if isinstance(want, str) and isinstance(got, list):
                want = [want]
            assert got == want, f"{stage.kind} {stage.name}.{field}: {got!r} != {want!r}"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: f"{s.kind}:{s.name}")
def test_every_field_has_a_description(stage: StageType) -> None:
    missing = [f.name for f in stage.fields() if not f.description]
    assert not missing, f"{stage.kind} {stage.name}: fields without a description: {missing}"


def test_manifests_import_no_driver() -> None:
    code = ("import sys; from etlsync.catalog import CATALOG; CATALOG.names('source'); "
            "from etlsync.jobs.schema import job_schema; job_schema(); "
            "print([m for m in ('asyncpg', 'aiomysql', 'pymysql', 'pymongo', 'pyarrow') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_schema_accepts_the_example_jobs_and_refuses_bad_ones() -> None:
    schema = job_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        errors = list(validator.iter_errors(doc))
        assert not errors, (path.name, [e.message for e in errors][:3])
    bad = {"source": {"type": "csv", "path": "x.csv", "delimeter": ";"},
           "sink": {"type": "sqlite", "path": "o.db", "table": "t"}}
    assert list(validator.iter_errors(bad))
    no_table = {"source": {"type": "csv", "path": "x.csv"}, "sink": {"type": "sqlite", "path": "o"}}
    assert list(validator.iter_errors(no_table))


def test_the_cli_prints_the_schema_and_lists_types(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "etlsync.cli", "schema"], capture_output=True,
                         text=True, check=True, timeout=60)
    assert json.loads(out.stdout)["title"] == "etlsync job"
    listed = subprocess.run([sys.executable, "-m", "etlsync.cli", "list", "sink", "--json"],
                            capture_output=True, text=True, check=True, timeout=60)
    rows = {r["type"]: r for r in json.loads(listed.stdout)}
    assert "transactional" in rows["postgres"]["capabilities"]
    assert rows["postgres"]["extra"] == "postgres"


class _Thing(Options, kw_only=True):
    size: int = msgspec.field(default=3)


def test_a_third_party_family_registers_and_builds(tmp_path: Path) -> None:
    manifest = Manifest(family="acme", summary="test family", stages=(
        StageType(Kind.SINK, "acme", "etlsync.testing:CollectingSink", _NoSize, "a sink",
                  frozenset({Capability.KEYED})),))
    register(manifest)
    try:
        assert CATALOG.find("sink", "acme", "x").family == "acme"
        from etlsync.jobs import build_job, load_job

        p = tmp_path / "job.yaml"
        p.write_text("source: {type: memory, rows: [{a: 1}]}\n"
                     "sink: {type: acme, delay: 0.0}\ncheckpoint: {type: memory}\n")
        built = build_job(load_job(p, {}))
        assert type(built.sinks[0]).__name__ == "CollectingSink"
    finally:
        CATALOG.unregister("acme")


class _NoSize(Options, kw_only=True):
    delay: float = 0.0
