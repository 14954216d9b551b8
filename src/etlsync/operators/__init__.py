"""Operators: batch transforms placed between a source and its sinks.

Stateless: :class:`Select`, :class:`Rename`, :class:`Cast`, :class:`FilterExpr`,
:class:`Filter`, :class:`Map`, :class:`MapBatch`, :class:`Clean`, :class:`SplitColumns`,
:class:`MergeColumns`, :class:`LookupJoin`, :class:`Sql` (DuckDB). Stateful (their state is
checkpointed): :class:`Aggregate`, :class:`Dedupe`, :class:`IntervalJoin`, :class:`CdcJoin`,
:class:`Quality` with ``unique`` rules. The optional-dependency ones import lazily.
"""

from typing import Any

from etlsync.operators.basic import Filter, Map, MapBatch
from etlsync.operators.cast import Cast
from etlsync.operators.columns import Rename, Select
from etlsync.operators.expr import FilterExpr, compile_expr

_LAZY = {
    "Aggregate": "etlsync.operators.aggregate", "Tumbling": "etlsync.operators.windows",
    "Hopping": "etlsync.operators.windows", "Session": "etlsync.operators.windows",
    "Dedupe": "etlsync.operators.dedupe", "Clean": "etlsync.operators.cleaning",
    "SplitColumns": "etlsync.operators.cleaning", "MergeColumns": "etlsync.operators.cleaning",
    "LookupJoin": "etlsync.operators.join", "IntervalJoin": "etlsync.operators.join",
    "CdcJoin": "etlsync.operators.cdcjoin", "Quality": "etlsync.operators.quality",
    "Rule": "etlsync.operators.quality", "Sql": "etlsync.operators.sql",
    "MemoryLookup": "etlsync.operators.lookup", "SqliteLookup": "etlsync.operators.lookup",
    "PostgresLookup": "etlsync.operators.lookup", "SnapshotLookup": "etlsync.operators.lookup",
    "StateLimitExceeded": "etlsync.operators._common",
    "RowsRejected": "etlsync.operators._common",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'etlsync.operators' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["Cast", "Filter", "FilterExpr", "Map", "MapBatch", "Rename", "Select",
           "compile_expr", *_LAZY]
