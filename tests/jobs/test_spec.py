"""Loading job files: validation errors name the file, the key path and what was expected;
``${VAR}`` substitution; secrets never leak into messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etlsync import ConfigError
from etlsync.jobs import load_job, parse_job
from etlsync.jobs.env import Redactor, substitute

BASE = """
source: {type: memory, rows: []}
sink: {type: collect}
"""


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def error_of(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_job(path, env or {})
    return str(info.value)


def test_minimal_job_loads_with_defaults(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, BASE, "orders.yaml"), {})
    assert job.name == "orders"
    assert job.spec.operators == [] and job.spec.sync.sync_mode is None
    assert job.base_dir == tmp_path.resolve()


def test_unknown_top_level_key_suggests_the_closest(tmp_path: Path) -> None:
    p = write(tmp_path, BASE + "batchsize: 10\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}: batchsize: unknown key; did you mean 'batch_size'?")


def test_wrong_type_names_key_path_and_expectation(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, BASE + "batch_size: lots\n"))
    assert "job.yaml: batch_size: expected int" in msg
    msg = error_of(write(tmp_path, BASE + "batch_size: 0\n"))
    assert "batch_size: expected int >= 1" in msg


def test_invalid_enum_lists_choices_and_suggests(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, BASE + "write: {write_mode: upsrt}\n"))
    assert "job.yaml: write.write_mode: invalid value 'upsrt' (did you mean 'upsert'?)" in msg
    assert "expected one of append, overwrite, upsert" in msg


def test_nested_unknown_key_has_a_full_path(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, BASE + "sync: {cursor: updated_at}\n"))
    assert "sync.cursor: unknown key; did you mean 'cursor_field'?" in msg


def test_missing_source_and_sink(tmp_path: Path) -> None:
    assert "source: required key is missing" in error_of(write(tmp_path, "sink: {type: c}\n"))
    assert "sink: required key is missing" in error_of(
        write(tmp_path, "source: {type: memory}\n"))
    assert "either 'sink' or 'sinks'" in error_of(
        write(tmp_path, BASE + "sinks: [{type: collect}]\n"))


def test_incremental_needs_a_cursor_field(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, BASE + "sync: {sync_mode: incremental}\n"))
    assert "sync.cursor_field: required when sync_mode is incremental" in msg


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "source: {type: memory\nsink: x\n"))
    assert "job.yaml: line" in msg and "invalid YAML" in msg


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    assert "job file not found" in error_of(tmp_path / "nope.yaml")
    assert "got an empty file" in error_of(write(tmp_path, ""))
    assert "got list" in error_of(write(tmp_path, "- a\n"))


def test_env_substitution_with_defaults_and_escapes(tmp_path: Path) -> None:
    p = write(tmp_path, """
name: ${JOB_NAME:-fallback}
source: {type: memory, rows: [], stream: "${STREAM}"}
sink: {type: collect, name: "cost $${NOT_A_VAR} ${USER_SUFFIX:-}x"}
batch_size: ${BATCH}
""")
    job = load_job(p, {"STREAM": "orders", "BATCH": "250"})
    assert job.name == "fallback"
    assert job.spec.source["stream"] == "orders"
    assert job.spec.batch_size == 250
    assert job.spec.sink == {"type": "collect", "name": "cost ${NOT_A_VAR} x"}


def test_missing_variable_is_an_error_naming_it_and_the_key(tmp_path: Path) -> None:
    p = write(tmp_path, BASE + "description: ${NOPE}\n")
    msg = error_of(p)
    assert f"{p}: description: environment variable NOPE is not set" in msg


def test_malformed_reference(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, BASE + "description: '${1BAD}'\n"))
    assert "description: malformed variable reference" in msg


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    p = write(tmp_path, BASE + "batch_size: ${SECRET_TOKEN}\n")
    msg = error_of(p, {"SECRET_TOKEN": "hunter2-very-secret"})
    assert "hunter2" not in msg
    assert "batch_size: expected int" in msg


def test_parse_job_accepts_a_document(tmp_path: Path) -> None:
    job = parse_job({"source": {"type": "memory"}, "sink": {"type": "collect"},
                     "name": "doc"}, tmp_path / "x.yaml", {})
    assert job.name == "doc"
    with pytest.raises(ConfigError, match="name: expected str matching"):
        parse_job({"source": {"type": "m"}, "sink": {"type": "c"}, "name": "a b"},
                  tmp_path / "x.yaml", {})


@settings(deadline=None)  # a loaded shared machine must not make it flaky
@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=30),
       st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True),
                       st.text(max_size=10), max_size=4))
def test_substitution_is_identity_without_references(text: str, env: dict[str, str]) -> None:
    secrets: set[str] = set()
    assert substitute({"a": [text]}, env, "", secrets) == {"a": [text]}
    assert secrets == set()


@settings(deadline=None)  # a loaded shared machine must not make it flaky
@given(st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True),
       st.text(alphabet=st.characters(blacklist_characters="${}"), max_size=12),
       st.text(alphabet="abc ", max_size=5), st.text(alphabet="xyz ", max_size=5))
def test_substitution_replaces_exactly_the_reference(name: str, value: str, pre: str,
                                                     post: str) -> None:
    secrets: set[str] = set()
    out = substitute(f"{pre}${{{name}}}{post}", {name: value}, "k", secrets)
    assert out == f"{pre}{value}{post}"
    assert secrets == {value}


def test_redactor_masks_secrets_longest_first() -> None:
    r = Redactor({"abc", "abcdef", "x"})
    assert r("token=abcdef other=abc short=x") == "token=*** other=*** short=x"
