"""CheckpointTracker: the committed checkpoint never passes an unacknowledged batch."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etlsync.core.checkpoint import Checkpoint
from etlsync.core.tracker import CheckpointTracker


def _expected(positions: list[int | None], ends: list[bool], prefix: int,
              start: Checkpoint | None) -> tuple[int | None, bool] | None:
    """The checkpoint the rule says: the last non-None position of the done prefix; a pass
    marker without a position (None, end) closes the pass of the checkpoint before it."""
    found = None if start is None else (start.position, start.pass_open)
    for p, end in zip(positions[:prefix], ends[:prefix], strict=True):
        if p is not None:
            found = (p, not end)
        elif end and found is not None:
            found = (found[0], False)
    return found


@given(n=st.integers(1, 60), data=st.data())
def test_committable_is_highest_fully_acknowledged_prefix(n: int, data: st.DataObject) -> None:
    start = data.draw(st.one_of(st.none(), st.builds(Checkpoint, st.integers(-5, -1))))
    tracker = CheckpointTracker(start=start)
    positions = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 10**6)),
                                   min_size=n, max_size=n))
    ends = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    refs = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    tickets = []
    for pos, end, r in zip(positions, ends, refs, strict=True):
        t = tracker.issue(pos, end)
        t.retain(r)
        tickets.append(t)
    releases = [i for i, r in enumerate(refs) for _ in range(r)]
    remaining = list(refs)
    for i in data.draw(st.permutations(releases)):
        tickets[i].release()
        remaining[i] -= 1
        prefix = 0
        while prefix < n and remaining[prefix] == 0:
            prefix += 1
        expected = _expected(positions, ends, prefix, start)
        got = tracker.committable
        if expected is None:
            assert got is None
        else:
            assert got is not None and (got.position, got.pass_open) == expected


@given(data=st.data())
def test_checkpoint_after_predicts_the_next_committable(data: st.DataObject) -> None:
    tracker = CheckpointTracker()
    n = data.draw(st.integers(1, 30))
    tickets = [tracker.issue(data.draw(st.one_of(st.none(), st.integers())),
                             data.draw(st.booleans())) for _ in range(n)]
    for t in tickets:
        t.retain()
    for i in data.draw(st.permutations(range(n))):
        t = tickets[i]
        predicted = tracker.checkpoint_after([t])
        version = tracker.version
        t.release()
        if predicted is not None:
            assert tracker.version == version + 1
            assert tracker.committable == predicted
            assert tracker.committable is not None and tracker.committable.seq == predicted.seq
        else:
            assert tracker.version == version


def test_a_pass_marker_without_position_closes_the_resumed_checkpoint() -> None:
    resumed = Checkpoint({"row": 10}, pass_open=True)
    tracker = CheckpointTracker(start=resumed)
    marker = tracker.issue(None, end_of_pass=True)
    marker.retain()
    assert tracker.checkpoint_after([marker]) == Checkpoint({"row": 10}, pass_open=False)
    marker.release()
    assert tracker.committable == Checkpoint({"row": 10}, pass_open=False)
    assert tracker.version == 1


def test_state_travels_with_the_ticket() -> None:
    tracker = CheckpointTracker()
    t = tracker.issue(7)
    t.retain()
    t.state = {"op:agg": {"groups": 3}}
    t.release()
    assert tracker.committable == Checkpoint(7, True, {"op:agg": {"groups": 3}})


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


def test_checkpoint_round_trips_and_reads_a_bare_0_1_position() -> None:
    cp = Checkpoint({"lsn": 5}, pass_open=False, state={"op:x": [1, 2]})
    assert Checkpoint.decode(cp.encode()) == cp
    legacy = Checkpoint.decode(b'{"file": "a.csv", "pass_complete": true}')
    assert legacy.pass_open is False and legacy.position["file"] == "a.csv"
    assert Checkpoint.decode(b'{"lsn": 9}') == Checkpoint({"lsn": 9}, pass_open=True)
