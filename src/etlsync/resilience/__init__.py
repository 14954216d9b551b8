"""Resilience: error classification, retry, circuit breaker, rate limits, dead letters.

Wrap any stage::

    sink = Resilient(PostgresSink(...), retry=RetryPolicy(max_attempts=None),
                     breaker=CircuitBreaker(), on_bad_data="dead_letter",
                     dead_letter=JsonlDeadLetterSink("dead.jsonl"), max_bad_ratio=0.01)

Replay dead letters with :func:`etlsync.resilience.replay.replay`.
"""

from etlsync.resilience.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from etlsync.resilience.classify import (
    Classification,
    ErrorKind,
    PermanentError,
    TransientError,
    classify,
    register_classifier,
    unregister_classifier,
)
from etlsync.resilience.deadletter import (
    DeadLetter,
    DeadLetterSink,
    JsonlDeadLetterSink,
    MemoryDeadLetterSink,
    PostgresDeadLetterSink,
    SqliteDeadLetterSink,
)
from etlsync.resilience.guard import (
    ResilienceStats,
    Resilient,
    ResilientOperator,
    TooManyBadRows,
)
from etlsync.resilience.policy import ErrorPolicy
from etlsync.resilience.ratelimit import TokenBucket
from etlsync.resilience.retry import RetryExhausted, RetryPolicy
from etlsync.resilience.source import ResilientCheckpointStore, ResilientSource

__all__ = [
    "BreakerState", "CircuitBreaker", "CircuitOpenError", "Classification", "DeadLetter",
    "DeadLetterSink", "ErrorKind", "ErrorPolicy", "JsonlDeadLetterSink",
    "MemoryDeadLetterSink", "PermanentError", "PostgresDeadLetterSink", "ResilienceStats",
    "Resilient", "ResilientCheckpointStore", "ResilientOperator", "ResilientSource",
    "RetryExhausted", "RetryPolicy",
    "SqliteDeadLetterSink", "TokenBucket", "TooManyBadRows", "TransientError", "classify",
    "register_classifier", "unregister_classifier",
]

