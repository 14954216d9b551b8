"""Positions survive encoding exactly (the checkpoint stores rely on it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etlsync.core.codec import dumps, loads

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(), st.datetimes(), st.dates(), st.times(),
    st.decimals(allow_nan=False, allow_infinity=False), st.binary(), st.uuids(),
    st.floats(allow_nan=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=12,
)


@given(values)
def test_round_trip(value: object) -> None:
    assert loads(dumps(value)) == value


def test_unencodable_value_names_its_type() -> None:
    try:
        dumps({"x": object()})
    except TypeError as exc:
        assert "object" in str(exc)
    else:
        raise AssertionError("expected TypeError")
