"""Operators: batch transforms placed between a source and its sinks."""

from etlsync.operators.basic import Filter, Map, MapBatch
from etlsync.operators.cast import Cast
from etlsync.operators.columns import Rename, Select
from etlsync.operators.expr import FilterExpr, compile_expr

__all__ = ["Cast", "Filter", "FilterExpr", "Map", "MapBatch", "Rename", "Select", "compile_expr"]
