"""Retry backoff, circuit breaker states and the token bucket, on a fake clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlsync.resilience.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from etlsync.resilience.classify import TransientError
from etlsync.resilience.ratelimit import TokenBucket
from etlsync.resilience.retry import RetryExhausted, RetryPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(n: int, exc: Exception) -> tuple[list[int], object]:
    calls = [0]

    async def fn() -> str:
        calls[0] += 1
        if calls[0] <= n:
            raise exc
        return "ok"

    return calls, fn


@given(retry=st.integers(1, 40), base=st.floats(0.001, 5), cap=st.floats(0.001, 100),
       seed=st.integers(0, 2**32))
def test_full_jitter_bounds(retry: int, base: float, cap: float, seed: int) -> None:
    policy = RetryPolicy(base_delay=base, max_delay=cap, rng=random.Random(seed))
    delay = policy.backoff(retry)
    assert 0 <= delay <= min(cap, base * 2 ** (retry - 1))


async def test_retries_transient_until_success() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=5, base_delay=0.1, clock=clock, sleep=clock.sleep)
    calls, fn = failing(3, ConnectionResetError("x"))
    assert await policy.call(fn) == "ok"  # type: ignore[arg-type]
    assert calls[0] == 4 and policy.stats.retries == 3 and len(clock.sleeps) == 3
    assert all(0 <= s <= 0.1 * 2 ** i for i, s in enumerate(clock.sleeps))


async def test_permanent_and_bad_data_not_retried() -> None:
    policy = RetryPolicy(max_attempts=5)
    calls, fn = failing(1, PermissionError("denied"))
    with pytest.raises(PermissionError):
        await policy.call(fn)  # type: ignore[arg-type]
    assert calls[0] == 1
    calls, fn = failing(1, ValueError("bad row"))
    with pytest.raises(ValueError):
        await policy.call(fn)  # type: ignore[arg-type]
    assert calls[0] == 1


async def test_gives_up_after_max_attempts_and_elapsed() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, clock=clock, sleep=clock.sleep)
    calls, fn = failing(10, ConnectionResetError("x"))
    with pytest.raises(RetryExhausted) as info:
        await policy.call(fn)  # type: ignore[arg-type]
    assert calls[0] == 3 and isinstance(info.value.__cause__, ConnectionResetError)
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=None, base_delay=1, max_delay=1, max_elapsed=10,
                         clock=clock, sleep=clock.sleep)
    calls, fn = failing(10**6, TimeoutError())
    with pytest.raises(RetryExhausted):
        await policy.call(fn)  # type: ignore[arg-type]
    assert clock.now <= 10.0 + 1e-9


async def test_retry_after_is_honoured() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, clock=clock, sleep=clock.sleep)
    _calls, fn = failing(1, TransientError("429 too many requests", retry_after=4.0))
    assert await policy.call(fn) == "ok"  # type: ignore[arg-type]
    assert clock.sleeps == [4.0]


async def test_breaker_opens_half_opens_and_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=5, clock=clock)
    dead = True

    async def call() -> str:
        if dead:
            raise ConnectionResetError("down")
        return "ok"

    for _ in range(3):
        with pytest.raises(ConnectionResetError):
            await breaker.call(call)
    assert breaker.state is BreakerState.OPEN and breaker.stats.opened == 1
    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(call)
    assert info.value.retry_after == pytest.approx(5)
    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(ConnectionResetError):  # failed probe reopens
        await breaker.call(call)
    assert breaker.stats.state is BreakerState.OPEN and breaker.stats.opened == 2
    clock.now += 5
    dead = False
    assert await breaker.call(call) == "ok"
    assert breaker.state is BreakerState.CLOSED and breaker.stats.closed == 1


async def test_breaker_ignores_bad_data() -> None:
    breaker = CircuitBreaker(failure_threshold=1)

    async def call() -> None:
        raise ValueError("bad row")

    for _ in range(3):
        with pytest.raises(ValueError):
            await breaker.call(call)
    assert breaker.state is BreakerState.CLOSED


async def test_retry_waits_through_open_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=3, clock=clock)
    policy = RetryPolicy(max_attempts=None, base_delay=0.01, max_elapsed=None, clock=clock,
                         sleep=clock.sleep)
    calls, fn = failing(4, ConnectionResetError("x"))
    assert await policy.call(lambda: breaker.call(fn)) == "ok"  # type: ignore[arg-type]
    assert breaker.stats.opened >= 1 and breaker.state is BreakerState.CLOSED
    # while open, calls were rejected without touching fn; each open lasted reset_timeout
    assert calls[0] == 5 and breaker.stats.rejected >= 1
    assert clock.now >= 3.0 * breaker.stats.opened - 1e-6


async def test_token_bucket_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1000, burst=1000, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        await bucket.acquire(500)
    # 5000 tokens at 1000/s with a full bucket of 1000 to start: 4 s
    assert clock.now == pytest.approx(4.0)
    big = TokenBucket(rate=100, burst=10, clock=clock, sleep=clock.sleep)
    start = clock.now
    await big.acquire(1000)  # larger than burst: borrows
    assert clock.now - start == pytest.approx(9.9)


@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=30),
       rate=st.floats(10, 10_000), burst=st.floats(1, 500))
async def test_token_bucket_never_exceeds_rate(sizes: list[int], rate: float,
                                               burst: float) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=rate, burst=burst, clock=clock, sleep=clock.sleep)
    for n in sizes:
        await bucket.acquire(n)
    assert sum(sizes) <= burst + rate * clock.now + 1e-6
