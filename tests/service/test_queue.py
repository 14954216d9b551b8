"""The run queue: global and per-resource limits, priorities, one run per job, cancel."""

from __future__ import annotations

from etlsync.service.queue import QueuedRun, RunQueue


def q(run_id: str, job: str, priority: int = 0, at: float = 0.0, resources: tuple[str, ...] = (),
      continuous: bool = False) -> QueuedRun:
    return QueuedRun(run_id=run_id, job=job, priority=priority, queued_at=at,
                     resources=resources, continuous=continuous)


def ids(items: list[QueuedRun]) -> list[str]:
    return [i.run_id for i in items]


def test_global_concurrency_and_priorities_then_age() -> None:
    queue = RunQueue(2)
    queue.put(q("old-low", "a", 0, 1.0))
    queue.put(q("new-high", "b", 5, 3.0))
    queue.put(q("mid-low", "c", 0, 2.0))
    assert ids(queue.admit(10)) == ["new-high", "old-low"]
    assert ids(queue.admit(10)) == []
    queue.done("old-low")
    assert ids(queue.admit(10)) == ["mid-low"]


def test_a_resource_limit_holds_back_only_runs_that_need_it() -> None:
    queue = RunQueue(10, {"warehouse": 1})
    queue.put(q("w1", "a", 9, resources=("warehouse",)))
    queue.put(q("w2", "b", 9, resources=("warehouse",)))
    queue.put(q("free", "c", 0))
    assert ids(queue.admit(0)) == ["w1", "free"]
    assert queue.in_use("warehouse") == 1
    queue.done("w1")
    assert ids(queue.admit(0)) == ["w2"]


def test_one_run_per_job_at_a_time() -> None:
    queue = RunQueue(5)
    queue.put(q("r1", "a", at=1))
    queue.put(q("r2", "a", at=2))
    assert ids(queue.admit(0)) == ["r1"]
    queue.done("r1")
    assert ids(queue.admit(0)) == ["r2"]


def test_continuous_runs_do_not_count_towards_the_global_limit() -> None:
    queue = RunQueue(1)
    queue.put(q("cdc", "cdc", continuous=True))
    queue.put(q("batch", "b"))
    assert sorted(ids(queue.admit(0))) == ["batch", "cdc"]


def test_cancel_a_queued_run_and_wait_for_not_before() -> None:
    queue = RunQueue(1)
    queue.put(q("r1", "a"))
    queue.put(q("r2", "b"))
    assert queue.cancel("r2") is not None and queue.cancel("r2") is None
    later = q("r3", "c")
    later.not_before = 5.0
    queue.put(later)
    assert ids(queue.admit(0)) == ["r1"]
    queue.done("r1")
    assert ids(queue.admit(4.9)) == [] and queue.next_wakeup() == 5.0
    assert ids(queue.admit(5.0)) == ["r3"]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, 5), st.integers(-2, 2),
              st.sampled_from([(), ("db",), ("api",), ("db", "api")]), st.booleans()),
    st.tuples(st.just("admit"), st.just(0), st.just(0), st.just(()), st.just(False)),
    st.tuples(st.just("done"), st.integers(0, 30), st.just(0), st.just(()), st.just(False)),
    st.tuples(st.just("cancel"), st.integers(0, 30), st.just(0), st.just(()), st.just(False)),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(_ops)
def test_limits_hold_whatever_the_order_of_operations(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    queue = RunQueue(3, {"db": 2, "api": 1})
    seq = 0
    for op, a, prio, res, cont in ops:
        if op == "put":
            seq += 1
            queue.put(q(f"r{seq}", f"job{a}", prio, float(seq), res, cont))
        elif op == "admit":
            started = queue.admit(0)
            waiting = queue.waiting
            # nothing that could start was left waiting behind what started
            for w in waiting:
                assert w.job in {x.job for x in queue.active} or \
                    any(queue.in_use(r) >= queue.limits[r] for r in w.resources) or \
                    (not w.continuous and sum(not x.continuous for x in queue.active) >= 3)
            assert len({x.run_id for x in started}) == len(started)
        elif op == "done":
            queue.done(f"r{a}")
        else:
            queue.cancel(f"r{a}")
        active = queue.active
        assert sum(not x.continuous for x in active) <= 3
        assert queue.in_use("db") <= 2 and queue.in_use("api") <= 1
        assert len({x.job for x in active}) == len(active)  # one run per job
