"""CheckpointTracker: the committed position never passes an unacknowledged batch."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etlsync.core.checkpoint import CheckpointTracker


@given(
    n=st.integers(1, 60),
    data=st.data(),
)
def test_committable_is_highest_fully_acknowledged_prefix(n: int, data: st.DataObject) -> None:
    tracker = CheckpointTracker()
    positions = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 10**6)), min_size=n, max_size=n))
    refs = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    tickets = []
    for pos, r in zip(positions, refs, strict=True):
        t = tracker.issue(pos)
        t.retain(r)
        tickets.append(t)
    releases = [i for i, r in enumerate(refs) for _ in range(r)]
    order = data.draw(st.permutations(releases))
    remaining = list(refs)
    for i in order:
        tickets[i].release()
        remaining[i] -= 1
        prefix = 0
        while prefix < n and remaining[prefix] == 0:
            prefix += 1
        expected = [p for p in positions[:prefix] if p is not None]
        if expected:
            assert tracker.has_committable
            assert tracker.committable == expected[-1]
        else:
            assert not tracker.has_committable


@given(data=st.data())
def test_position_after_predicts_the_next_committable(data: st.DataObject) -> None:
    tracker = CheckpointTracker()
    n = data.draw(st.integers(1, 30))
    tickets = [tracker.issue(data.draw(st.one_of(st.none(), st.integers()))) for _ in range(n)]
    for t in tickets:
        t.retain()
    for i in data.draw(st.permutations(range(n))):
        t = tickets[i]
        found, predicted = tracker.position_after([t])
        before = (tracker.has_committable, tracker.committable, tracker.version)
        t.release()
        after = (tracker.has_committable, tracker.committable, tracker.version)
        if found:
            assert after[2] == before[2] + 1 and after[1] == predicted
        else:
            assert after[2] == before[2]


def test_releasing_more_than_retained_is_an_error() -> None:
    tracker = CheckpointTracker()
    t = tracker.issue(1)
    t.retain()
    t.release()
    try:
        t.release()
    except RuntimeError as exc:
        assert "released more often" in str(exc)
    else:
        raise AssertionError("double release went unnoticed")
