"""The compiled row builder of CsvSource gives exactly what ``dict(zip(...))`` gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etlsync.connectors.files.csvfile import row_maker

_names = st.lists(st.text(max_size=8), min_size=1, max_size=8)
_records = st.lists(st.lists(st.text(max_size=5), max_size=10), max_size=20)


@given(_names, _records)
def test_row_maker_matches_dict_zip(names: list[str], records: list[list[str]]) -> None:
    keys = [*names, "\x00extra"]
    make = row_maker(names, lambda r: dict(zip(keys, r, strict=False)))
    for rec in records:
        got = make(rec)
        want = dict(zip(keys, rec, strict=False))
        assert got == want
        assert list(got) == list(want)  # same key order


def test_row_maker_names_cannot_inject_code() -> None:
    names = ["'] or __import__('os') #", '"""', "\\", "a\nb", "{}"]
    make = row_maker(names, lambda r: {})
    assert make(["1", "2", "3", "4", "5"]) == dict(zip(names, "12345", strict=True))
