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


def test_cancel_a_queued_run_and_requeue_with_a_delay() -> None:
    queue = RunQueue(1)
    queue.put(q("r1", "a"))
    queue.put(q("r2", "b"))
    assert queue.cancel("r2") is not None and queue.cancel("r2") is None
    assert ids(queue.admit(0)) == ["r1"]
    queue.requeue("r1", not_before=5.0)
    assert ids(queue.admit(4.9)) == [] and queue.next_wakeup() == 5.0
    assert ids(queue.admit(5.0)) == ["r1"]
