"""Operators: batch transforms placed between a source and its sinks."""

from etlsync.operators.basic import Filter, Map, MapBatch

__all__ = ["Filter", "Map", "MapBatch"]
