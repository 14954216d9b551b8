"""Stateless row operators: map, filter, and a whole-batch function."""

from __future__ import annotations

from collections.abc import Callable

from etlsync.core.batch import Batch, Op, Row
from etlsync.core.schema import Schema
from etlsync.core.stages import Operator, OperatorOutput


class Map(Operator):
    """Apply ``fn`` to every row; ``fn`` returns the new row (change kinds are kept)."""

    def __init__(self, fn: Callable[[Row], Row], name: str = "map") -> None:
        self.fn = fn
        self.name = name

    async def process(self, batch: Batch) -> OperatorOutput:
        fn = self.fn
        return batch.with_rows([fn(r) for r in batch.rows])


class Filter(Operator):
    """Keep the rows for which ``predicate`` is true. Deletes and truncates always pass,
    so a filter never hides a change a sink must apply."""

    def __init__(self, predicate: Callable[[Row], bool], name: str = "filter") -> None:
        self.predicate = predicate
        self.name = name

    def transform_schema(self, schema: Schema) -> Schema:
        return schema

    async def process(self, batch: Batch) -> OperatorOutput:
        pred = self.predicate
        if batch.ops is None:
            return batch.with_rows([r for r in batch.rows if pred(r)])
        keep = [
            i for i, (op, r) in enumerate(zip(batch.ops, batch.rows, strict=True))
            if op in (Op.DELETE, Op.TRUNCATE) or pred(r)
        ]
        before = batch.before
        return batch.with_rows(
            [batch.rows[i] for i in keep],
            ops=[batch.ops[i] for i in keep],
            before=None if before is None else [before[i] for i in keep],
        )


class MapBatch(Operator):
    """Apply ``fn`` to the whole list of rows: for vectorised or per-batch work."""

    def __init__(self, fn: Callable[[list[Row]], list[Row]], name: str = "map_batch") -> None:
        self.fn = fn
        self.name = name

    async def process(self, batch: Batch) -> OperatorOutput:
        return batch.with_rows(self.fn(batch.rows))


def filter_operator(predicate: str | Callable[[Row], bool], kind: str = "expression"
                    ) -> Operator:
    """The ``filter`` of job files: an expression (:class:`FilterExpr`) or a callable."""
    if kind == "callable":
        assert callable(predicate)
        return Filter(predicate)
    from etlsync.operators.expr import FilterExpr

    assert isinstance(predicate, str)
    return FilterExpr(predicate)
