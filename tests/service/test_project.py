"""The project file: loading, validation naming file and key, cycles named, templates."""

from __future__ import annotations

import pytest

from etlsync.core.errors import ConfigError
from etlsync.service import load_project
from etlsync.service.graph import JobGraph, find_cycle
from etlsync.service.project import render_templates, seconds
from tests.service.conftest import MakeProject, memory_job


def test_find_cycle_names_the_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"x": ["x"]}) == ["x", "x"]


def test_graph_order_puts_dependencies_first_and_lists_dependents() -> None:
    g = JobGraph({"c": ["a", "b"], "d": ["c"], "a": [], "b": []})
    order = g.order()
    assert order.index("a") < order.index("c") < order.index("d")
    assert g.dependents("a") == ["c"] and g.dependents("c") == ["d"]


def test_a_dependency_cycle_is_rejected_at_load_with_the_cycle_named(
        make_project: MakeProject) -> None:
    root = make_project({"jobs": {"load": {"depends_on": ["clean"]},
                                  "clean": {"depends_on": ["report"]},
                                  "report": {"depends_on": ["load"]}}},
                        {n: memory_job() for n in ("load", "clean", "report")})
    with pytest.raises(ConfigError, match=r"dependency cycle: clean -> load -> report -> clean"):
        load_project(root)


def test_a_cycle_through_completion_triggers_is_rejected_too(make_project: MakeProject) -> None:
    root = make_project({"jobs": {"a": {"triggers": [{"type": "job", "job": "b"}]},
                                  "b": {"depends_on": ["a"]}}},
                        {"a": memory_job(), "b": memory_job()})
    with pytest.raises(ConfigError, match=r"cycle: a -> b -> a"):
        load_project(root)


@pytest.mark.parametrize(("jobs_spec", "message"), [
    ({"a": {"depends_on": ["nope"]}}, r"jobs\.a: depends on unknown job 'nope'"),
    ({"a": {"schedule": {"cron": "* * *"}}}, r"jobs\.a\.schedule: invalid cron expression"),
    ({"a": {"schedule": {"every": "5 minutes"}}}, r"invalid duration '5 minutes'"),
    ({"a": {"schedule": {"every": "5m", "cron": "* * * * *"}}}, r"exactly one of"),
    ({"a": {"resources": ["db"]}}, r"resource 'db', which queue\.resources does not define"),
    ({"a": {"misfire": "later"}}, r"jobs\.a\.misfire"),
    ({"a": {"schedul": {}}}, r"jobs\.a\.schedul: unknown key"),
    ({"a": {"triggers": [{"type": "files"}]}}, r"triggers\[0\]\.path: required"),
])
def test_bad_project_files_name_the_key(make_project: MakeProject, jobs_spec: dict[str, object],
                                        message: str) -> None:
    root = make_project({"jobs": jobs_spec}, {"a": memory_job()})
    with pytest.raises(ConfigError, match=message):
        load_project(root)


def test_a_bad_job_file_fails_the_project_load_naming_the_job_file(
        make_project: MakeProject) -> None:
    root = make_project({"jobs": {"a": {}}}, {"a": {"source": {"type": "memory", "rows": []},
                                                     "sink": {"type": "colect"}}})
    with pytest.raises(ConfigError, match=r"jobs/a\.yaml: sink\.type"):
        load_project(root)


def test_unlisted_job_files_are_on_demand_jobs(make_project: MakeProject) -> None:
    project = load_project(make_project({"jobs": {"a": {"schedule": {"every": "1h"}}}},
                                        {"a": memory_job(), "b": memory_job()}))
    assert sorted(project.jobs) == ["a", "b"]
    assert project.jobs["b"].schedule is None
    assert project.jobs["a"].schedule is not None


def test_durations() -> None:
    assert seconds("1h30m", "x") == 5400 and seconds("7d", "x") == 604800
    assert seconds(90, "x") == 90 and seconds("1.5s", "x") == 1.5
    with pytest.raises(ConfigError, match="x: invalid duration"):
        seconds("soon", "x")


def test_templates_render_run_context_and_leave_environment_references() -> None:
    ctx = {"run": {"window_start": "2027-01-01T00:00:00+00:00", "id": "r1"},
           "trigger": {"path": "/in/a.csv"}, "upstream": {"orders": {"run_id": "r0"}}}
    doc = {"source": {"path": "${trigger.path}", "query": "WHERE t >= '${run.window_start}'"},
           "sink": {"dsn": "postgresql://u:${PGPASS}@h/db", "note": "$${run.id} ${upstream.orders.run_id}"}}
    out = render_templates(doc, ctx, "job.yaml")
    assert out["source"] == {"path": "/in/a.csv",
                             "query": "WHERE t >= '2027-01-01T00:00:00+00:00'"}
    assert out["sink"]["dsn"] == "postgresql://u:${PGPASS}@h/db"
    assert out["sink"]["note"] == "$${run.id} r0"
    with pytest.raises(ConfigError, match=r"job\.yaml\.source\.x: \$\{trigger\.name\} is not set"):
        render_templates({"source": {"x": "${trigger.name}"}}, ctx, "job.yaml")


def test_a_templated_job_builds_per_run_with_its_context(make_project: MakeProject) -> None:
    job = {"source": {"type": "memory", "rows": [{"w": "${run.window_end}"}]},
           "sink": {"type": "collect"}, "checkpoint": {"type": "memory"}}
    project = load_project(make_project({"jobs": {"a": {}}}, {"a": job}))
    entry = project.jobs["a"]
    assert entry.templated
    built = entry.build({"run": {"window_end": "2027-01-15T08:00:00+00:00"}})
    assert built.source.rows == [{"w": "2027-01-15T08:00:00+00:00"}]  # type: ignore[attr-defined]
