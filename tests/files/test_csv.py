"""CsvSource and CsvSink: dialects, chunked streaming, resume, globs, atomic overwrite."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync import Batch, ConfigError, DataError, Pipeline, SchemaError, StageError
from etlsync.connectors.files import CsvSink, CsvSource, csvfile
from etlsync.testing import CollectingSink, MemorySource


def write_csv(path: Path, header: list[str], rows: list[list[str]], **kw: Any) -> None:
    enc = kw.pop("encoding", "utf-8")
    with path.open("w", newline="", encoding=enc) as f:
        w = csv.writer(f, **kw)
        w.writerow(header)
        w.writerows(rows)


async def read_all(source: CsvSource, position: Any = None) -> list[Batch]:
    return [b async for b in source.read(position)]


async def test_values_are_strings_and_empty_field_stays_empty(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text('id,name,note\n1,"Smith, J",\n2,,"say ""hi"""\n')
    batches = await read_all(CsvSource(p))
    assert [r for b in batches for r in b.rows] == [
        {"id": "1", "name": "Smith, J", "note": ""},
        {"id": "2", "name": "", "note": 'say "hi"'},
    ]
    assert batches[-1].end_of_pass and batches[-1].rows == []


async def test_dialect_delimiter_quotechar_and_encoding(tmp_path: Path) -> None:
    p = tmp_path / "latin.csv"
    write_csv(p, ["id", "city"], [["1", "Zürich; Süd"], ["2", "Málaga"]], delimiter=";",
              quotechar="'", encoding="latin-1")
    src = CsvSource(p, delimiter=";", quotechar="'", encoding="latin-1")
    rows = [r for b in await read_all(src) for r in b.rows]
    assert rows == [{"id": "1", "city": "Zürich; Süd"}, {"id": "2", "city": "Málaga"}]


def test_encoding_that_is_not_ascii_compatible_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="utf-16"):
        CsvSource(tmp_path / "x.csv", encoding="utf-16")


async def test_no_header_uses_given_or_numbered_columns(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("1,a\n2,b\n")
    rows = [r for b in await read_all(CsvSource(p, header=False)) for r in b.rows]
    assert rows == [{"column1": "1", "column2": "a"}, {"column1": "2", "column2": "b"}]
    named = CsvSource(p, header=False, columns=["id", "v"])
    assert [r for b in await read_all(named) for r in b.rows][1] == {"id": "2", "v": "b"}


async def test_columns_select_from_header(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    write_csv(p, ["a", "b", "c"], [["1", "2", "3"]])
    rows = [r for b in await read_all(CsvSource(p, columns=["c", "a"])) for r in b.rows]
    assert rows == [{"c": "3", "a": "1"}]
    with pytest.raises(SchemaError, match="zz"):
        await read_all(CsvSource(p, columns=["zz"]))


async def test_record_with_wrong_field_count_names_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("a,b\n1,2\n3\n")
    with pytest.raises(DataError, match=r"bad\.csv: a record has 1 fields, expected 2"):
        await read_all(CsvSource(p))


async def test_glob_reads_files_in_sorted_order_and_resumes_across_files(tmp_path: Path) -> None:
    for name, ids in [("b.csv", [3, 4]), ("a.csv", [1, 2]), ("c.csv", [5, 6, 7])]:
        write_csv(tmp_path / name, ["id"], [[str(i)] for i in ids])
    src = CsvSource(str(tmp_path / "*.csv"), batch_size=3)
    assert src.stream == tmp_path.name
    batches = await read_all(src)
    assert [r["id"] for b in batches for r in b.rows] == [str(i) for i in range(1, 8)]
    assert [len(b) for b in batches] == [3, 3, 1, 0]
    rest = await read_all(src, batches[0].position)
    assert [r["id"] for b in rest for r in b.rows] == ["4", "5", "6", "7"]


async def test_batches_are_record_form_and_split_where_the_header_changes(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", ["id", "name"], [["1", "x"], ["2", "y"]])
    write_csv(tmp_path / "b.csv", ["name", "id"], [["z", "3"]])
    src = CsvSource(str(tmp_path / "*.csv"), batch_size=10)
    batches = await read_all(src)
    assert [(b.columns, b.records) for b in batches[:2]] == [
        (("id", "name"), [["1", "x"], ["2", "y"]]), (("name", "id"), [["z", "3"]])]
    assert [r for b in batches for r in b.rows] == [
        {"id": "1", "name": "x"}, {"id": "2", "name": "y"}, {"name": "z", "id": "3"}]
    rest = await read_all(src, batches[0].position)
    assert [r for b in rest for r in b.rows] == [{"name": "z", "id": "3"}]


async def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dup.csv").write_text("id,name,id\n1,a,2\n")
    with pytest.raises(SchemaError, match=r"dup\.csv: column 'id' appears more than once"):
        await read_all(CsvSource(tmp_path / "dup.csv"))


async def test_discover_gives_header_names_as_strings(tmp_path: Path) -> None:
    p = tmp_path / "orders.csv"
    write_csv(p, ["id", "price"], [["1", "2.5"]])
    schemas = await CsvSource(p, primary_key=["id"]).discover()
    schema = schemas["orders"]
    assert schema.names == ["id", "price"] and schema.primary_key == ("id",)
    assert {c.type.value for c in schema.columns} == {"string"}


field = st.text(alphabet=st.sampled_from(list('ab,"\n\r é;x ')), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(field, min_size=3, max_size=3), max_size=60),
       chunk=st.integers(4, 300), batch=st.integers(1, 25), cut=st.integers(0, 80))
async def test_chunking_and_resume_never_lose_or_repeat_a_record(
        tmp_path: Path, rows: list[list[str]], chunk: int, batch: int, cut: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [r for r in rows if r != ["", "", ""]]  # an all-empty record is a blank line
    rows = [[f.replace("\r", "") for f in r] for r in rows]
    p = tmp_path / "h.csv"
    write_csv(p, ["a", "b", "c"], rows)
    monkeypatch.setattr(csvfile, "CHUNK_BYTES", chunk)
    src = CsvSource(p, batch_size=batch)
    batches = await read_all(src)
    expected = [dict(zip("abc", r, strict=True)) for r in rows]
    assert [r for b in batches for r in b.rows] == expected
    # resume from any committed position: exactly the remainder
    data = [b for b in batches if b.rows]
    k = cut % (len(data) + 1)
    before = [r for b in data[:k] for r in b.rows]
    position = data[k - 1].position if k else None
    rest = [r for b in await read_all(src, position) for r in b.rows]
    assert before + rest == expected


async def run_sink(sink: CsvSink, rows: list[dict[str, Any]], fail_after: int | None = None
                   ) -> None:
    def fail(b: Batch) -> None:
        if fail_after is not None and b.position and b.position > fail_after:
            raise RuntimeError("boom")

    class Failing(CollectingSink):
        async def write(self, batch: Batch) -> None:
            fail(batch)

    await Pipeline(MemorySource(rows, batch_size=2), [], [sink, Failing()]).run()


async def test_csv_sink_append_adds_to_existing_file(tmp_path: Path) -> None:
    p = tmp_path / "out.csv"
    await run_sink(CsvSink(p), [{"id": 1, "v": None}, {"id": 2, "v": True}])
    await run_sink(CsvSink(p), [{"id": 3, "v": 1.5}])
    assert p.read_text().splitlines() == ["id,v", "1,", "2,true", "3,1.5"]


async def test_csv_sink_rejects_a_new_column(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="'w' is not in the file's columns"):
        await run_sink(CsvSink(tmp_path / "o.csv"), [{"id": 1}, {"id": 2, "w": 3}])


