"""The JSON Schema of job files, made from the connector manifests (``etlsync schema``).

Editors with YAML language support validate and complete job files with it, e.g. a first
line ``# yaml-language-server: $schema=etlsync-job.schema.json``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from etlsync.catalog import CATALOG
from etlsync.jobs.spec import ErrorsSpec, JobSpec, SyncSpec, WriteSpec
from etlsync.manifest import Kind, StageType

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _stage_schema(stage: StageType, defs: dict[str, Any]) -> dict[str, Any]:
    (schema,), components = msgspec.json.schema_components([stage.options],
                                                           ref_template="#/$defs/{name}")
    defs.update(components)
    body = dict(defs.pop(schema["$ref"].rsplit("/", 1)[-1]))
    props = {"type": {"const": stage.name, "description": stage.summary}, **body["properties"]}
    required = ["type", *body.get("required", [])]
    out: dict[str, Any] = {"type": "object", "title": f"{stage.kind} {stage.name}",
                           "description": stage.summary, "properties": props,
                           "required": required, "additionalProperties": False}
    if stage.extra:
        out["description"] += f" (pip install 'etlsync[{stage.extra}]')"
    return out


def _one_of(kind: Kind, defs: dict[str, Any]) -> dict[str, Any]:
    arms = []
    for stage in CATALOG.types(kind):
        name = f"{kind.value}_{stage.name}"
        defs[name] = _stage_schema(stage, defs)
        arms.append({"$ref": f"#/$defs/{name}"})
    # a 'package.module:Class' type names a class without a manifest
    adhoc: dict[str, Any] = {"type": "object", "required": ["type"], "properties": {
        "type": {"type": "string", "pattern": r"^[\w.]+:[\w.]+$"}}}
    arms.append(adhoc)
    return {"oneOf": arms}


def _operator(defs: dict[str, Any]) -> dict[str, Any]:
    arms: list[dict[str, Any]] = []
    for stage in CATALOG.types(Kind.OPERATOR):
        name = f"operator_{stage.name}"
        defs[name] = _stage_schema(stage, defs)
        arms.append({"$ref": f"#/$defs/{name}"})
        short: dict[str, Any] = {}
        if stage.shorthand is not None:
            short = defs[name]["properties"].get(stage.shorthand, {})
        options = {k: v for k, v in defs[name]["properties"].items() if k != "type"}
        arms.append({"type": "object", "additionalProperties": False, "minProperties": 1,
                     "maxProperties": 1, "properties": {stage.name: {
                         "anyOf": [short, {"type": "object", "properties": options,
                                           "additionalProperties": False}]}}})
    return {"oneOf": arms}


def job_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a job file."""
    _, defs = msgspec.json.schema_components(
        [JobSpec, SyncSpec, WriteSpec, ErrorsSpec], ref_template="#/$defs/{name}")
    root = dict(defs.pop("JobSpec"))
    props = dict(root["properties"])
    props["source"] = _one_of(Kind.SOURCE, defs)
    sink = _one_of(Kind.SINK, defs)
    props["sink"] = sink
    props["sinks"] = {"type": "array", "items": sink}
    props["operators"] = {"type": "array", "items": _operator(defs)}
    props["checkpoint"] = _one_of(Kind.CHECKPOINT, defs)
    error_defs = dict(defs["ErrorsSpec"]["properties"])
    error_defs["dead_letter"] = _one_of(Kind.DEAD_LETTER, defs)
    defs["ErrorsSpec"] = {**defs["ErrorsSpec"], "properties": error_defs}
    return {"$schema": DIALECT, "$id": "https://etlsync.dev/schemas/job.json",
            "title": "etlsync job", "type": "object", "properties": props,
            "required": root.get("required", []), "additionalProperties": False,
            "$defs": defs}
