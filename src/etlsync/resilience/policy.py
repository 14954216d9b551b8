"""One error policy for a whole pipeline: every stage wrapped the same way.

::

    policy = ErrorPolicy(on_bad_data="dead_letter", dead_letter=JsonlDeadLetterSink("dl.jsonl"),
                         max_bad_ratio=0.01)
    pipeline = policy.pipeline(source, [Map(parse)], [sink], name="orders",
                               checkpoint_store=store)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from etlsync.core.checkpoint import CheckpointStore
from etlsync.core.pipeline import Pipeline
from etlsync.core.stages import Operator, Sink, Source, stage_name
from etlsync.resilience.breaker import CircuitBreaker
from etlsync.resilience.deadletter import DeadLetterSink
from etlsync.resilience.guard import BadDataPolicy, Resilient, ResilientOperator
from etlsync.resilience.ratelimit import TokenBucket
from etlsync.resilience.retry import RetryPolicy
from etlsync.resilience.source import ResilientSource


def _fresh_retry(template: RetryPolicy) -> RetryPolicy:
    """A copy of ``template`` with its own counters."""
    out = copy.copy(template)
    out.stats = type(template.stats)()
    return out


@dataclass(slots=True)
class ErrorPolicy:
    """How a pipeline treats failures: retries, breakers, bad rows, and the threshold.

    :param on_bad_data: ``fail``, ``skip`` or ``dead_letter`` for every operator and sink.
    :param dead_letter: where bad rows go (one sink shared by all stages).
    :param max_bad_ratio: stop once more than this share of a stage's rows was bad.
    :param retry: the template policy; each stage gets a copy with its own counters.
    :param breaker: give each sink a circuit breaker with these settings (``None``: none).
    :param sink_rate_limit: rows/s per sink (``None``: unlimited).
    :param wrap_source: reconnect-and-resume the source.
    """

    on_bad_data: BadDataPolicy = "fail"
    dead_letter: DeadLetterSink | None = None
    max_bad_ratio: float | None = None
    min_rows_for_ratio: int = 0
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=None,
                                                                   max_elapsed=900.0))
    breaker: dict[str, Any] | None = field(
        default_factory=lambda: {"failure_threshold": 5, "reset_timeout": 10.0})
    sink_rate_limit: float | None = None
    wrap_source: bool = True

    def sink(self, sink: Sink, *, verify_with: CheckpointStore | None = None) -> Resilient:
        """``sink`` wrapped by this policy."""
        breaker = None if self.breaker is None else CircuitBreaker(
            name=stage_name(sink), **self.breaker)
        limit = None if self.sink_rate_limit is None else TokenBucket(self.sink_rate_limit)
        return Resilient(sink, retry=_fresh_retry(self.retry), breaker=breaker,
                         rate_limit=limit, on_bad_data=self.on_bad_data,
                         dead_letter=self.dead_letter, max_bad_ratio=self.max_bad_ratio,
                         min_rows_for_ratio=self.min_rows_for_ratio, verify_with=verify_with)

    def operator(self, operator: Operator, *, pipeline: str = "") -> ResilientOperator:
        """``operator`` wrapped by this policy."""
        return ResilientOperator(operator, retry=_fresh_retry(self.retry),
                                 on_bad_data=self.on_bad_data, dead_letter=self.dead_letter,
                                 max_bad_ratio=self.max_bad_ratio,
                                 min_rows_for_ratio=self.min_rows_for_ratio, pipeline=pipeline)

    def source(self, source: Source) -> Source:
        """``source`` wrapped to reconnect and resume (unchanged if ``wrap_source`` is off)."""
        return ResilientSource(source, retry=_fresh_retry(self.retry)) if self.wrap_source \
            else source

    def pipeline(self, source: Source, operators: Sequence[Operator] = (),
                 sinks: Sequence[Sink] | Sink = (), *, name: str = "pipeline",
                 checkpoint_store: CheckpointStore | None = None,
                 **options: Any) -> Pipeline:
        """A :class:`Pipeline` whose every stage follows this policy. A transactional sink
        verifies ambiguous commits against its own store (or ``checkpoint_store``)."""
        sink_list = [sinks] if isinstance(sinks, Sink) else list(sinks)
        return Pipeline(
            self.source(source),
            [self.operator(op, pipeline=name) for op in operators],
            [self.sink(s, verify_with=checkpoint_store) for s in sink_list],
            name=name, checkpoint_store=checkpoint_store, **options)
