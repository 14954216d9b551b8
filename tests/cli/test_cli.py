"""The etlsync command: exit codes, one-line errors, secrets masked, init, progress bar."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import pytest

from etlsync import Pipeline
from etlsync.cli import main
from etlsync.progress import Progress, format_line
from etlsync.testing import CollectingSink, MemorySource

ROWS = "[{id: '1', price: '1.50'}, {id: '2', price: '2x'}, {id: '3', price: '3'}]"


def job(tmp_path: Path, body: str) -> str:
    p = tmp_path / "job.yaml"
    p.write_text(body, encoding="utf-8")
    return str(p)


def test_validate_prints_the_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = job(tmp_path, f"source: {{type: memory, rows: {ROWS}}}\n"
                         "operators: [{select: [id]}]\nsink: {type: jsonl, path: out.jsonl}\n")
    assert main(["validate", path]) == 0
    expected = f"ok: {path} (pipeline 'job'): memory -> select -> jsonl"
    assert capsys.readouterr().out.strip() == expected
    assert main(["validate", path, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [s["type"] for s in plan["stages"]] == ["memory", "select", "jsonl", "sqlite"]
    assert not (tmp_path / "out.jsonl").exists()


def test_config_error_exits_2_with_one_line_naming_file_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = job(tmp_path, "source: {type: csv, path: x.csv, options: {delimeter: ';'}}\n"
                         "sink: {type: jsonl, path: o.jsonl}\n")
    assert main(["run", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {path}: source.options.delimeter: unknown option; "
                          "did you mean 'delimiter'?")


def test_run_failure_exits_1_naming_the_stage_column_and_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = job(tmp_path, f"source: {{type: memory, rows: {ROWS}, stream: orders}}\n"
                         "operators: [{cast: {price: decimal}}]\n"
                         "sink: {type: jsonl, path: out.jsonl}\ncheckpoint: {type: memory}\n")
    assert main(["run", path, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1  # one line, nothing else
    line = err.strip()
    assert line.startswith("error: stage 'op:cast' failed: DataError: cast: stream 'orders', "
                           "row 2: column 'price': cannot convert '2x' to decimal")


def test_secrets_from_the_environment_are_never_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-T0ken-value"
    monkeypatch.setenv("ETLSYNC_TEST_TOKEN", secret)
    path = job(tmp_path, f"source: {{type: memory, rows: {ROWS}, batch_size: 1,"
                         f" name: 'src-${{ETLSYNC_TEST_TOKEN}}'}}\n"
                         "operators: [{cast: {price: decimal}}]\n"
                         "sink: {type: jsonl, path: out.jsonl}\ncheckpoint: {type: memory}\n")
    outputs = []
    for argv in (["validate", path, "--json"], ["run", path, "--dry-run", "--limit", "1"],
                 ["run", path, "--dry-run", "--json"], ["-vv", "run", path, "--no-progress"]):
        main(argv)
        out, err = capsys.readouterr()
        outputs.append(out + err)
    assert all(secret not in text for text in outputs)
    assert "src-***" in outputs[1]  # the plan shows where the secret is, masked
    assert "error: stage 'op:cast' failed" in outputs[2]  # the dry run meets the bad row
    assert "error: stage 'op:cast' failed" in outputs[3]
    assert "pipeline starting" in outputs[3]  # -vv logs to stderr


def test_missing_variable_and_negative_limit_are_config_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = job(tmp_path, "source: {type: memory, rows: [], stream: '${ETLSYNC_NOT_SET_VAR}'}\n"
                         "sink: {type: collect}\n")
    assert main(["run", path]) == 2
    assert "source.stream: environment variable ETLSYNC_NOT_SET_VAR is not set" in \
        capsys.readouterr().err
    ok = job(tmp_path, "source: {type: memory, rows: []}\nsink: {type: collect}\n")
    assert main(["run", ok, "--dry-run", "--limit", "-1"]) == 2
    assert main(["run", ok, "--limit", "5"]) == 2
    assert "--limit: only applies to --dry-run" in capsys.readouterr().err


def test_run_prints_a_summary_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = job(tmp_path, "source: {type: memory, rows: [{a: 1}, {a: 2}, {a: 30}]}\n"
                         "operators: [{filter: 'a < 10'}]\n"
                         "sink: {type: jsonl, path: out/rows.jsonl}\n")
    assert main(["run", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("job: completed: 3 rows read, 2 written, 0 rejected, 1 filtered in ")
    assert "rows/s" in out
    lines = (tmp_path / "out" / "rows.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"a": 1}, {"a": 2}]
    assert main(["run", path, "--json"]) == 0  # a complete pass before: a new full pass
    result = json.loads(capsys.readouterr().out)
    assert result["rows_read"] == 3 and result["status"] == "completed"
    assert set(result) >= {"rows_written", "rows_rejected", "seconds", "rows_per_s"}


def test_init_wizard_writes_a_valid_job_from_answers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    answers = "\n".join(["orders", "csv", "data/orders.csv", "incremental", "", "id", "sqlite",
                         "out/orders.db", "orders", ""]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
    target = tmp_path / "orders.yaml"
    assert main(["init", str(target)]) == 0
    out = capsys.readouterr().out
    assert "source type [csv]:" in out and "write mode (append, overwrite, upsert) [upsert]" in out
    import yaml

    doc = yaml.safe_load(target.read_text())
    assert doc == {
        "name": "orders", "source": {"type": "csv", "path": "data/orders.csv"},
        "sync": {"sync_mode": "incremental", "cursor_field": "updated_at", "primary_key": "id"},
        "sink": {"type": "sqlite", "path": "out/orders.db", "table": "orders"},
        "write": {"write_mode": "upsert"}}
    assert main(["validate", str(target)]) == 0


def test_init_reasks_invalid_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    answers = "\n".join(["", "excel", "jsonl", "in.jsonl", "sometimes", "full_refresh", "",
                         "jsonl", "out.jsonl", ""]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
    assert main(["init", str(tmp_path / "j.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.count("expected one of:") == 2
    text = (tmp_path / "j.yaml").read_text()
    assert "name: j" in text and "write_mode: append" in text


def test_init_non_interactive_flags_and_no_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "job.yaml"
    argv = ["init", str(target), "--yes", "--source", "csv", "--source-path", "in.csv",
            "--source-opt", "delimiter=;", "--sink", "sqlite", "--sink-path", "o.db",
            "--table", "t", "--primary-key", "a,b", "--write-mode", "upsert"]
    assert main(argv) == 0
    text = target.read_text()
    assert "delimiter: ;" in text and "- a\n" in text and "write_mode: upsert" in text
    assert main(argv) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "x.yaml"), "--yes", "--sink", "sqlite"]) == 2
    assert "source path - a file, or a glob read in sorted path order: no value" in \
        capsys.readouterr().err


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_line() -> None:
    assert format_line(12_345, 12_000, 3.0) == \
        "12,345 rows read | 12,000 written | 4,115 rows/s | 00:03"
    assert format_line(1, 0, 3725).endswith("| 1:02:05")


async def test_progress_draws_on_a_tty_and_clears_the_line() -> None:
    pipeline = Pipeline(MemorySource([{"i": i} for i in range(50)], batch_size=5),
                        [], [CollectingSink(delay=0.01)], name="p")
    tty = FakeTty()
    async with Progress(pipeline, stream=tty, interval=0.01, delay=0.0) as bar:
        await pipeline.run()
        await asyncio.sleep(0.03)
    text = tty.getvalue()
    assert bar.drawn >= 2
    assert "50 rows read | 50 written |" in text and "rows/s" in text
    assert text.endswith("\r")  # the line is wiped at the end


async def test_progress_stays_silent_off_a_tty_and_when_disabled() -> None:
    pipeline = Pipeline(MemorySource([{"i": 1}]), [], [CollectingSink()], name="p")
    plain = io.StringIO()
    async with Progress(pipeline, stream=plain, delay=0.0) as bar:
        await pipeline.run()
    tty = FakeTty()
    async with Progress(pipeline, stream=tty, delay=0.0, enabled=False):
        await asyncio.sleep(0.01)
    assert bar.drawn == 0 and plain.getvalue() == "" and tty.getvalue() == ""
