"""CsvSource(engine="arrow"): the same rows, errors and positions as the csv module's
engine, in arrow-form batches; fallback to the csv module where arrow could differ."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import Batch, ConfigError, DataError, MemoryCheckpointStore, Pipeline, StageError
from etlsync.connectors.files import CsvSource, csvfile
from etlsync.jobs import build_job, load_job
from etlsync.testing import CollectingSink

pa = pytest.importorskip("pyarrow")


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def numbered(n: int, start: int = 0) -> list[list[str]]:
    return [[str(i), f"name {i}", "" if i % 3 else f"note, {i}"] for i in range(start, start + n)]


async def read_all(source: CsvSource, position: Any = None) -> list[Batch]:
    return [b async for b in source.read(position)]


def rows_of(batches: list[Batch]) -> list[dict[str, Any]]:
    return [r for b in batches for r in b.rows]


def forms(batches: list[Batch]) -> list[bool]:
    """Per data batch: is it in arrow form (read before ``rows`` converts it)."""
    return [b.arrow is not None for b in batches if len(b)]


def test_engine_option_is_checked(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    assert CsvSource(p).engine == "python"
    assert CsvSource(p, engine="arrow").engine == "arrow"
    with pytest.raises(ConfigError, match="unknown engine 'polars'"):
        CsvSource(p, engine="polars")


def test_arrow_engine_without_pyarrow_names_the_option_and_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    with pytest.raises(ConfigError, match=r"engine='arrow' needs pyarrow: pip install "
                                          r"'etlsync\[parquet\]'"):
        CsvSource(tmp_path / "a.csv", engine="arrow")
    assert CsvSource(tmp_path / "a.csv").engine == "python"  # the default needs no pyarrow


async def test_arrow_batches_hold_string_columns_and_the_same_rows(tmp_path: Path,
                                                                    monkeypatch: Any) -> None:
    monkeypatch.setattr(csvfile, "ARROW_CHUNK_BYTES", 200)  # many chunks
    monkeypatch.setattr(csvfile, "CHUNK_BYTES", 200)  # the same: the same positions
    p = tmp_path / "orders.csv"
    write_rows(p, ["id", "name", "note"], numbered(95))
    arrow = await read_all(CsvSource(p, engine="arrow", batch_size=10))
    python = await read_all(CsvSource(p, batch_size=10))
    assert forms(arrow) == [True] * 10
    for b in arrow[:-1]:
        assert b.arrow.column_names == ["id", "name", "note"]
        assert all(t == pa.string() for t in b.arrow.schema.types)
        assert sum(c.null_count for c in b.arrow.columns) == 0  # "" stays "", never null
    assert [len(b) for b in arrow] == [10] * 9 + [5, 0]
    assert [b.position for b in arrow] == [b.position for b in python]
    assert rows_of(arrow) == rows_of(python)
    assert rows_of(arrow)[1] == {"id": "1", "name": "name 1", "note": ""}
    assert arrow[-1].end_of_pass


async def test_header_blank_lines_bom_and_crlf_as_the_python_engine(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    p.write_bytes(b'\r\n\r\n\xef\xbb\xbfid,"na\nme"\r\n1,"x\r\ny"\r\n\r\n2,\r\n')
    arrow = await read_all(CsvSource(p, engine="arrow"))
    python = await read_all(CsvSource(p))
    assert forms(arrow) == [True]
    assert rows_of(arrow) == rows_of(python) == [
        {"\ufeffid": "1", "na\nme": "x\r\ny"}, {"\ufeffid": "2", "na\nme": ""}]
    p.write_bytes(b'\xef\xbb\xbf\r\nid,name\r\n1,x\r\n')
    for enc in ("utf-8", "utf-8-sig"):  # utf-8: the header is the BOM alone (one field)
        arrow_out = await outcome(CsvSource(p, engine="arrow", encoding=enc))
        assert arrow_out[:3] == (await outcome(CsvSource(p, encoding=enc)))[:3]
    assert arrow_out[2][0] == [{"id": "1", "name": "x"}] and arrow_out[3] == [True]


async def test_columns_selection_and_no_header(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    write_rows(p, ["a", "b", "c"], [["1", "2", "3"], ["4", "5", "6"]])
    for kw in ({"columns": ["c", "a"]}, {"columns": ["b"]}, {"header": False},
               {"header": False, "columns": ["x", "y", "z"]}):
        arrow = await read_all(CsvSource(p, engine="arrow", **kw))
        python = await read_all(CsvSource(p, **kw))
        assert forms(arrow) == [True]
        assert arrow[0].columns == python[0].columns
        assert rows_of(arrow) == rows_of(python)


async def test_ragged_row_and_bad_encoding_raise_the_python_engines_error(
        tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(csvfile, "ARROW_CHUNK_BYTES", 64)
    p = tmp_path / "bad.csv"
    write_rows(p, ["a", "b"], [["1", "2"]] * 20 + [["3"]] + [["4", "5"]] * 5)
    for engine in ("python", "arrow"):
        with pytest.raises(DataError, match=r"bad\.csv: a record has 1 fields, expected 2"):
            await read_all(CsvSource(p, engine=engine))
    p.write_bytes(b"a,b\n" + b"1,2\n" * 30 + b"3,\xff\n")
    messages = []
    for engine in ("python", "arrow"):
        with pytest.raises(DataError, match=r"bad\.csv: bytes 126: not utf-8") as info:
            await read_all(CsvSource(p, engine=engine))
        messages.append(str(info.value))
    assert messages[0] == messages[1]


async def test_a_chunk_arrow_would_read_differently_falls_back_to_the_csv_module(
        tmp_path: Path, monkeypatch: Any) -> None:
    # 40-byte reads cut the first chunk after row 3 (36 bytes): the second chunk starts
    # with a record that starts with a BOM, which arrow would drop and the csv module keeps
    lines = [b"id,name\n"] + [b"%02d,nam\n" % i for i in range(40)]
    lines[5] = "\ufeff4,nam\n".encode()
    p = tmp_path / "f.csv"
    p.write_bytes(b"".join(lines))
    monkeypatch.setattr(csvfile, "ARROW_CHUNK_BYTES", 40)
    arrow = await read_all(CsvSource(p, engine="arrow", batch_size=4))
    python = await read_all(CsvSource(p, batch_size=4))
    assert forms(arrow) == [True, False, False] + [True] * 8
    assert [len(b) for b in arrow] == [4, 4, 2] + [4] * 7 + [2, 0]  # flushed at form changes
    assert rows_of(arrow) == rows_of(python)
    assert rows_of(arrow)[4]["id"] == "\ufeff4"
    # every position resumes to exactly the remainder
    expected = rows_of(python)
    done: list[dict[str, Any]] = []
    arrow = await read_all(CsvSource(p, engine="arrow", batch_size=4))
    for b in arrow[:-1]:
        done += b.rows
        rest = rows_of(await read_all(CsvSource(p, engine="arrow", batch_size=4), b.position))
        assert done + rest == expected


async def test_a_field_over_the_csv_modules_limit_fails_as_with_the_python_engine(
        tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(csvfile, "ARROW_CHUNK_BYTES", 4096)
    p = tmp_path / "long.csv"
    write_rows(p, ["id", "text"], [[str(i), "x" * 50] for i in range(100)] + [["100", "y" * 300]])
    old = csv.field_size_limit(200)
    try:
        for engine in ("python", "arrow"):
            with pytest.raises(csv.Error, match="field larger than field limit"):
                await read_all(CsvSource(p, engine=engine))
    finally:
        csv.field_size_limit(old)


async def test_default_chunk_sizes_give_the_same_rows_on_a_written_file(tmp_path: Path) -> None:
    import random

    rng = random.Random(4)
    alphabet = ["a", ",", '"', "\n", "\r", " ", "é", "\t", "\r\n", "1", ""]
    rows = [["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(4)]
            for _ in range(60_000)]
    rows = [r for r in rows if any(r)]  # an all-empty record is written as a blank line
    p = tmp_path / "big.csv"
    write_rows(p, ["a", "b", "c", "d"], rows)
    assert p.stat().st_size > 2 * csvfile.ARROW_CHUNK_BYTES
    arrow = await read_all(CsvSource(p, engine="arrow", batch_size=5000))
    python = await read_all(CsvSource(p, batch_size=5000))
    assert forms(arrow) == [True] * len(forms(arrow))
    assert [len(b) for b in arrow] == [len(b) for b in python]
    assert rows_of(arrow) == rows_of(python)
    assert [list(r.values()) for r in rows_of(python)] == rows


async def test_resume_mid_file_from_a_stopped_run(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(csvfile, "ARROW_CHUNK_BYTES", 300)
    p = tmp_path / "orders.csv"
    write_rows(p, ["id", "name", "note"], numbered(200))
    everything = rows_of(await read_all(CsvSource(p, batch_size=7)))
    store = MemoryCheckpointStore()

    def boom(batch: Batch) -> None:
        if batch.position and batch.position.get("offset", 0) > p.stat().st_size // 2:
            raise RuntimeError("stop mid-file")

    first = CollectingSink(fail_on=boom)
    with pytest.raises(StageError):
        await Pipeline(CsvSource(p, engine="arrow", batch_size=7), [], [first], name="j",
                       checkpoint_store=store).run()
    checkpoint = await store.load("j")
    assert checkpoint is not None
    position = checkpoint.position
    assert position["file"] == str(p) and position["skip"] > 0  # inside a chunk
    done = next(i for i, b in enumerate(first.batches) if b.position == position)
    before = [r for b in first.batches[:done + 1] for r in b.rows]
    second = CollectingSink()
    await Pipeline(CsvSource(p, engine="arrow", batch_size=7), [], [second], name="j",
                   checkpoint_store=store).run()
    assert before + second.rows == everything  # no loss, no duplicate
    python_rest = rows_of(await read_all(CsvSource(p, batch_size=7), position))
    assert python_rest == second.rows
    # a position of the python engine resumes the arrow engine, and back
    python = await read_all(CsvSource(p, batch_size=7))
    for b in (python[3], python[11]):
        arrow_rest = rows_of(await read_all(CsvSource(p, engine="arrow", batch_size=7),
                                            b.position))
        assert arrow_rest == rows_of(await read_all(CsvSource(p), b.position))


async def test_glob_of_files_with_differing_headers(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(csvfile, "ARROW_CHUNK_BYTES", 100)
    monkeypatch.setattr(csvfile, "CHUNK_BYTES", 100)
    write_rows(tmp_path / "a.csv", ["id", "name", "note"], numbered(12))
    write_rows(tmp_path / "b.csv", ["note", "id", "name"],
               [[r[2], r[0], r[1]] for r in numbered(9, 12)])
    write_rows(tmp_path / "c.csv", ["id", "name", "note"], numbered(5, 21))
    glob = str(tmp_path / "*.csv")
    arrow = await read_all(CsvSource(glob, engine="arrow", batch_size=5))
    python = await read_all(CsvSource(glob, batch_size=5))
    assert forms(arrow) == [True] * len(forms(arrow))
    assert [b.columns for b in arrow] == [b.columns for b in python]
    assert [b.position for b in arrow] == [b.position for b in python]
    assert [len(b) for b in arrow] == [5, 5, 2, 5, 4, 5, 0]  # split where the header changes
    assert rows_of(arrow) == rows_of(python)
    assert sorted(int(r["id"]) for r in rows_of(python)) == list(range(26))
    for b in python[:-1]:
        rest = rows_of(await read_all(CsvSource(glob, engine="arrow", batch_size=5), b.position))
        assert rest == rows_of(await read_all(CsvSource(glob, batch_size=5), b.position))
    selected = await read_all(CsvSource(glob, engine="arrow", columns=["name", "id"]))
    assert forms(selected) == [True]  # one layout: one batch
    assert rows_of(selected) == rows_of(await read_all(CsvSource(glob, columns=["name", "id"])))


async def test_incremental_mode_gives_the_same_rows(tmp_path: Path) -> None:
    p = tmp_path / "inc.csv"
    write_rows(p, ["id", "at"], [[str(i), f"2024-01-{i % 28 + 1:02d}"] for i in range(50)])
    got = []
    for engine in ("python", "arrow"):
        store = MemoryCheckpointStore()
        sink = CollectingSink()
        src = CsvSource(p, engine=engine, batch_size=8, sync_mode="incremental",
                        cursor_field="at", primary_key=["id"])
        await Pipeline(src, [], [sink], name="inc", checkpoint_store=store).run()
        got.append((sink.rows, await store.load("inc")))
    assert got[0] == got[1]


async def test_a_dialect_arrow_cannot_read_uses_the_csv_module(tmp_path: Path) -> None:
    p = tmp_path / "l.csv"
    p.write_bytes("id;city\n1;Zürich\n".encode("latin-1"))
    src = CsvSource(p, engine="arrow", delimiter=";", encoding="latin-1")
    batches = await read_all(src)
    assert forms(batches) == [False]
    assert rows_of(batches) == [{"id": "1", "city": "Zürich"}]
    p.write_text("id§city\n1§x\n", encoding="utf-8")
    assert rows_of(await read_all(CsvSource(p, engine="arrow", delimiter="§"))) == [
        {"id": "1", "city": "x"}]


async def test_yaml_job_with_engine_arrow(tmp_path: Path) -> None:
    write_rows(tmp_path / "orders.csv", ["id", "name", "note"], numbered(30))
    job = tmp_path / "job.yaml"
    job.write_text("source: {type: csv, path: orders.csv, engine: arrow, batch_size: 8}\n"
                   "sink: {type: collect}\ncheckpoint: {type: memory}\n", encoding="utf-8")
    built = build_job(load_job(job, {}))
    assert isinstance(built.source, CsvSource) and built.source.engine == "arrow"
    assert built.plan()["stages"][0]["options"]["engine"] == "arrow"
    await built.pipeline().run()
    sink = built.sinks[0]
    assert isinstance(sink, CollectingSink)
    assert forms(sink.batches) == [True] * 4
    assert len(sink.rows) == 30
    job.write_text("source: {type: csv, path: orders.csv, engine: duckdb}\n"
                   "sink: {type: collect}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"source.engine: invalid value 'duckdb'; expected one of"):
        build_job(load_job(job, {}))


# -- equivalence: random texts over a nasty alphabet --------------------------------------

TOKENS = ["a", ",", '"', "\n", "\r", " ", "é", "\t", "\r\n", '""', ",,", "\n\n", "b,c\n"]
HEADS = ["a,b,c\n", "\n\na,b,c\r\n", 'a,"b",c\n', "a,b\n", "a\n", "", "\ufeffa,b,c\n"]
OPTIONS = [{}, {"header": False}, {"columns": ["c", "a"]}, {"header": False, "columns": ["x"]},
           {"quotechar": "'"}, {"delimiter": "\t"}, {"encoding": "utf-8-sig"}]


async def outcome(src: CsvSource, position: Any = None) -> tuple[Any, ...]:
    """("ok", positions, rows per batch, forms) or ("error", type, message)."""
    try:
        batches = await read_all(src, position)
    except Exception as exc:  # noqa: BLE001 - DataError, SchemaError, csv.Error: the same
        return ("error", type(exc), str(exc))
    kinds = forms(batches)
    return ("ok", [b.position for b in batches], [b.rows for b in batches], kinds)


def flat(batches_rows: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for rows in batches_rows for r in rows]


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(head=st.sampled_from(HEADS), body=st.lists(st.sampled_from(TOKENS), max_size=60),
       bad=st.booleans() | st.none(), options=st.sampled_from(OPTIONS),
       chunk=st.integers(4, 120), batch=st.integers(1, 12), cut=st.integers(0, 50))
async def test_both_engines_give_the_same_rows_or_the_same_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, head: str, body: list[str],
        bad: bool | None, options: dict[str, Any], chunk: int, batch: int, cut: int) -> None:
    data = (head + "".join(body)).encode()
    if bad:  # a byte that is not UTF-8, somewhere
        at = cut % (len(data) + 1)
        data = data[:at] + b"\xff" + data[at:]
    p = tmp_path / "x.csv"
    p.write_bytes(data)
    monkeypatch.setattr(csvfile, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(csvfile, "ARROW_CHUNK_BYTES", chunk)

    def source(engine: str) -> CsvSource:
        return CsvSource(p, batch_size=batch, engine=engine, **options)

    python = await outcome(source("python"))
    arrow = await outcome(source("arrow"))
    if python[0] == "error":
        assert arrow == python
        return
    assert arrow[0] == "ok" and flat(arrow[2]) == flat(python[2])
    if len(set(arrow[3])) <= 1:  # no form change (no fallback next to arrow chunks)
        assert arrow[1] == python[1]  # batches end at the same positions
    if len(arrow[1]) < 2:
        return
    # a position of the arrow run (not the end of the pass) resumes both engines to the rest
    k = cut % (len(arrow[1]) - 1)
    rest = await outcome(source("arrow"), arrow[1][k])
    assert rest[0] == "ok"
    assert flat(arrow[2][:k + 1]) + flat(rest[2]) == flat(python[2])
    assert flat(rest[2]) == flat((await outcome(source("python"), arrow[1][k]))[2])
