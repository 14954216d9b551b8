"""A circuit breaker: closed, open, half-open; state in counters and logs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from etlsync.log import get_logger
from etlsync.resilience.classify import Classification, ErrorKind, TransientError, classify

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    """Calls pass; consecutive failures are counted."""
    OPEN = "open"
    """Calls fail fast with :class:`CircuitOpenError` until ``reset_timeout`` has passed."""
    HALF_OPEN = "half_open"
    """One probe call at a time passes; success closes the circuit, failure reopens it."""


class CircuitOpenError(TransientError):
    """Raised instead of calling a stage whose circuit is open. Transient, with
    ``retry_after`` set to the time left until the breaker lets a probe through, so a
    :class:`~etlsync.resilience.retry.RetryPolicy` waits exactly that long."""


@dataclass(slots=True)
class BreakerStats:
    """Counters readable while running."""

    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    failures: int = 0
    successes: int = 0
    rejected: int = 0
    opened: int = 0
    closed: int = 0
    half_opened: int = 0


class CircuitBreaker:
    """Stops calling a failing stage for a while, then probes it.

    :param failure_threshold: consecutive counted failures that open the circuit.
    :param reset_timeout: seconds the circuit stays open before a half-open probe.
    :param success_threshold: consecutive probe successes that close it again.
    :param counts: error kinds that count as failures (default transient and permanent;
        bad data says nothing about the stage's health).
    :param name: used in log lines.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 10.0,
        *,
        success_threshold: int = 1,
        counts: frozenset[ErrorKind] = frozenset({ErrorKind.TRANSIENT, ErrorKind.PERMANENT}),
        classifier: Callable[[BaseException], Classification] = classify,
        clock: Callable[[], float] = time.monotonic,
        name: str = "breaker",
    ) -> None:
        if failure_threshold < 1 or success_threshold < 1 or reset_timeout < 0:
            raise ValueError("thresholds must be >= 1 and reset_timeout >= 0")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.success_threshold = success_threshold
        self.counts = counts
        self.classifier = classifier
        self.clock = clock
        self.name = name
        self.stats = BreakerStats()
        self.log = get_logger(breaker=name)
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_successes = 0

    @property
    def state(self) -> BreakerState:
        """The current state (an open circuit whose timeout passed reads as half-open)."""
        if self.stats.state is BreakerState.OPEN and self._remaining() <= 0:
            return BreakerState.HALF_OPEN
        return self.stats.state

    def _remaining(self) -> float:
        return self._opened_at + self.reset_timeout - self.clock()

    def _set(self, state: BreakerState, **fields: Any) -> None:
        old = self.stats.state
        if old is state:
            return
        self.stats.state = state
        if state is BreakerState.OPEN:
            self.stats.opened += 1
            self._opened_at = self.clock()
            self.log.warning("circuit opened", previous=old.value, **fields)
        elif state is BreakerState.HALF_OPEN:
            self.stats.half_opened += 1
            self.log.info("circuit half-open: probing", **fields)
        else:
            self.stats.closed += 1
            self.log.warning("circuit closed", previous=old.value, **fields)

    def before_call(self) -> None:
        """Admit a call or raise :class:`CircuitOpenError`."""
        st = self.stats.state
        if st is BreakerState.CLOSED:
            return
        if st is BreakerState.OPEN:
            left = self._remaining()
            if left > 0:
                self.stats.rejected += 1
                raise CircuitOpenError(f"circuit {self.name!r} is open", retry_after=left)
            self._set(BreakerState.HALF_OPEN)
            self._probe_successes = 0
        if self._probe_in_flight:
            self.stats.rejected += 1
            raise CircuitOpenError(f"circuit {self.name!r} is half-open, probe in flight",
                                   retry_after=min(0.05, self.reset_timeout) or 0.0)
        self._probe_in_flight = True

    def on_success(self) -> None:
        """Record a successful call."""
        self.stats.successes += 1
        self.stats.consecutive_failures = 0
        if self.stats.state is BreakerState.HALF_OPEN:
            self._probe_in_flight = False
            self._probe_successes += 1
            if self._probe_successes >= self.success_threshold:
                self._set(BreakerState.CLOSED)

    def on_failure(self, exc: BaseException) -> None:
        """Record a failed call; errors whose kind is not in ``counts`` do not count."""
        half_open = self.stats.state is BreakerState.HALF_OPEN
        if half_open:
            self._probe_in_flight = False
        if self.classifier(exc).kind not in self.counts:
            if half_open:
                self.on_success()
            return
        self.stats.failures += 1
        self.stats.consecutive_failures += 1
        if half_open or self.stats.consecutive_failures >= self.failure_threshold:
            self._set(BreakerState.OPEN, error=f"{type(exc).__name__}: {exc}"[:300],
                      consecutive_failures=self.stats.consecutive_failures)
            self._opened_at = self.clock()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` through the breaker.

        :raises CircuitOpenError: when the circuit is open (nothing is called).
        """
        self.before_call()
        try:
            result = await fn()
        except BaseException as exc:
            if isinstance(exc, Exception):
                self.on_failure(exc)
            elif self.stats.state is BreakerState.HALF_OPEN:
                self._probe_in_flight = False
            raise
        self.on_success()
        return result
