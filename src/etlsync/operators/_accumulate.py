"""Aggregate functions as accumulator slots: parsing, per-batch updates on columns, merging
partial results (arrow's group-by), and results."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from etlsync.core.errors import ConfigError, DataError

FUNCTIONS = ("count", "count_distinct", "sum", "avg", "min", "max", "first", "last")
_CALL = re.compile(r"^\s*([a-z_]+)\s*\(\s*([^()]*?)\s*\)\s*$")
_ARROW = {"count": "count", "sum": "sum", "min": "min", "max": "max", "first": "first",
          "last": "last", "count_distinct": "distinct"}


@dataclass(frozen=True, slots=True)
class AggSpec:
    """One output column: ``name = function(column)`` (``column`` is ``None`` for
    ``count()``, which counts rows; every other function skips nulls, as SQL does)."""

    name: str
    function: str
    column: str | None
    slot: int


def parse_aggregates(given: Any, where: str) -> list[AggSpec]:
    """``{"orders": "count()", "revenue": "sum(amount)"}`` (or ``(function, column)``
    tuples) as specs with their accumulator slots (``avg`` takes two)."""
    if not isinstance(given, dict) or not given:
        raise ConfigError(f"{where}: aggregates must map output names to functions, e.g. "
                          "{orders: 'count()', revenue: 'sum(amount)'}")
    specs, slot = [], 0
    for name, fn in given.items():
        if isinstance(fn, tuple | list) and len(fn) == 2:
            function, column = str(fn[0]), fn[1]
        elif isinstance(fn, str) and (m := _CALL.match(fn)):
            function, column = m.group(1), m.group(2) or None
        else:
            raise ConfigError(f"{where}.{name}: {fn!r} is not a function call such as "
                              "'sum(amount)' or 'count()'")
        if column in ("*", ""):
            column = None
        if function not in FUNCTIONS:
            raise ConfigError(f"{where}.{name}: unknown function {function!r}; expected one of "
                              f"{', '.join(FUNCTIONS)}")
        if column is None and function != "count":
            raise ConfigError(f"{where}.{name}: {function}() needs a column, e.g. "
                              f"'{function}(amount)'")
        specs.append(AggSpec(str(name), function, column, slot))
        slot += 2 if function == "avg" else 1
    return specs


def new_accumulator(specs: Sequence[AggSpec]) -> Callable[[], list[Any]]:
    """A factory of empty accumulators (a list of slots)."""
    template: list[Any] = []
    distinct: list[int] = []
    for s in specs:
        if s.function in ("count",):
            template.append(0)
        elif s.function == "avg":
            template.extend((None, 0))
        elif s.function == "count_distinct":
            template.append(None)
            distinct.append(s.slot)
        else:
            template.append(None)
    if not distinct:
        return template.copy

    def make() -> list[Any]:
        acc = template.copy()
        for i in distinct:
            acc[i] = set()
        return acc
    return make


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


def _min(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None or a <= b else b


def _max(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None or a >= b else b


def _type_error(spec: AggSpec, exc: TypeError) -> DataError:
    return DataError(f"aggregate {spec.name} = {spec.function}({spec.column}): {exc}",
                     column=spec.column)


def update(specs: Sequence[AggSpec], accs: Sequence[list[Any]],
           columns: dict[str, Sequence[Any]]) -> None:
    """Add rows to their accumulators: ``accs[i]`` is row ``i``'s accumulator and
    ``columns[c][i]`` its value of ``c``. Raises before changing anything when a value does
    not combine (the batch then changes no state)."""
    staged: list[tuple[AggSpec, list[tuple[list[Any], Any]]]] = []
    for spec in specs:
        if spec.function == "count" and spec.column is None:
            continue
        values = columns[spec.column or ""]
        pairs = [(a, v) for a, v in zip(accs, values, strict=True) if v is not None]
        if spec.function in ("sum", "avg"):
            _check_numbers(spec, pairs)
        elif spec.function in ("min", "max"):
            _check_ordered(spec, pairs)
        staged.append((spec, pairs))
    for spec in specs:
        if spec.function == "count" and spec.column is None:
            i = spec.slot
            for a in accs:
                a[i] += 1
    for spec, pairs in staged:
        i, fn = spec.slot, spec.function
        if fn == "count":
            for a, _ in pairs:
                a[i] += 1
        elif fn == "sum":
            for a, v in pairs:
                cur = a[i]
                a[i] = v if cur is None else cur + v
        elif fn == "avg":
            for a, v in pairs:
                cur = a[i]
                a[i] = v if cur is None else cur + v
                a[i + 1] += 1
        elif fn == "min":
            for a, v in pairs:
                cur = a[i]
                if cur is None or v < cur:
                    a[i] = v
        elif fn == "max":
            for a, v in pairs:
                cur = a[i]
                if cur is None or v > cur:
                    a[i] = v
        elif fn == "first":
            for a, v in pairs:
                if a[i] is None:
                    a[i] = v
        elif fn == "last":
            for a, v in pairs:
                a[i] = v
        else:  # count_distinct
            for a, v in pairs:
                a[i].add(v)


def _check_numbers(spec: AggSpec, pairs: list[tuple[list[Any], Any]]) -> None:
    kinds = {type(v) for _, v in pairs}
    if not kinds <= {int, float, Decimal}:
        bad = next(v for _, v in pairs if type(v) not in (int, float, Decimal))
        raise DataError(f"aggregate {spec.name} = {spec.function}({spec.column}): {bad!r} is "
                        "not a number (cast the column first)", column=spec.column, value=bad)
    if Decimal in kinds and float in kinds:
        raise DataError(f"aggregate {spec.name} = {spec.function}({spec.column}): the column "
                        "mixes Decimal and float values (cast it to one type)",
                        column=spec.column)


def _check_ordered(spec: AggSpec, pairs: list[tuple[list[Any], Any]]) -> None:
    kinds = {type(v) for _, v in pairs}
    if len(kinds) > 1 and not kinds <= {int, float, Decimal}:
        raise DataError(f"aggregate {spec.name} = {spec.function}({spec.column}): values of "
                        f"different types {sorted(k.__name__ for k in kinds)} cannot be ordered",
                        column=spec.column)


def merge(specs: Sequence[AggSpec], into: list[Any], other: list[Any]) -> None:
    """Fold accumulator ``other`` into ``into`` (session windows merging)."""
    for spec in specs:
        i, fn = spec.slot, spec.function
        if fn == "count":
            into[i] += other[i]
        elif fn == "sum":
            into[i] = _add(into[i], other[i])
        elif fn == "avg":
            into[i] = _add(into[i], other[i])
            into[i + 1] += other[i + 1]
        elif fn == "min":
            into[i] = _min(into[i], other[i])
        elif fn == "max":
            into[i] = _max(into[i], other[i])
        elif fn == "first":
            if into[i] is None:
                into[i] = other[i]
        elif fn == "last":
            if other[i] is not None:
                into[i] = other[i]
        else:
            into[i] |= other[i]


def results(specs: Sequence[AggSpec], acc: list[Any]) -> list[Any]:
    """The output values of an accumulator, in the order of ``specs``."""
    out: list[Any] = []
    for spec in specs:
        v = acc[spec.slot]
        if spec.function == "avg":
            n = acc[spec.slot + 1]
            v = None if not n else v / n
        elif spec.function == "count_distinct":
            v = len(v)
        out.append(v)
    return out


def copy_accumulator(acc: list[Any]) -> list[Any]:
    """A copy that later updates do not change (sets are copied)."""
    return [set(v) if type(v) is set else v for v in acc]


# -- arrow: group-by partials, merged into the accumulators ------------------------------------

def arrow_aggregations(specs: Sequence[AggSpec]) -> list[tuple[Any, str]]:
    """The distinct ``(column, function)`` pairs arrow's group-by computes for ``specs``."""
    out: list[tuple[Any, str]] = []
    for spec in specs:
        if spec.column is None:
            wanted: list[tuple[Any, str]] = [(None, "count_all")]
        elif spec.function == "avg":
            wanted = [(spec.column, "sum"), (spec.column, "count")]
        else:
            wanted = [(spec.column, _ARROW[spec.function])]
        for w in wanted:
            if w not in out:
                out.append(w)
    return out


def arrow_partials(table: Any, keys: Sequence[str], specs: Sequence[AggSpec]
                   ) -> tuple[list[tuple[Any, ...]], dict[tuple[Any, str], list[Any]]]:
    """Group ``table`` by ``keys`` in arrow: the group keys and each aggregation's values."""
    wanted = arrow_aggregations(specs)
    ordered = any(f in ("first", "last") for _, f in wanted)
    grouped = table.group_by(list(keys), use_threads=not ordered).aggregate(
        [([] if c is None else c, f) for c, f in wanted])
    key_cols = [grouped.column(k).to_pylist() for k in keys]
    values = {(c, f): grouped.column("count_all" if c is None else f"{c}_{f}").to_pylist()
              for c, f in wanted}
    group_keys = list(zip(*key_cols, strict=True)) if key_cols else [()] * grouped.num_rows
    return group_keys, values


def merge_partials(specs: Sequence[AggSpec], accs: Sequence[list[Any]],
                   values: dict[tuple[Any, str], list[Any]]) -> None:
    """Fold arrow's per-group results into ``accs`` (one accumulator per group)."""
    for spec in specs:
        i, fn, col = spec.slot, spec.function, spec.column
        if col is None:
            for a, n in zip(accs, values[(None, "count_all")], strict=True):
                a[i] += n
        elif fn == "count":
            for a, n in zip(accs, values[(col, "count")], strict=True):
                a[i] += n
        elif fn in ("sum", "avg"):
            for a, v in zip(accs, values[(col, "sum")], strict=True):
                a[i] = _add(a[i], v)
            if fn == "avg":
                for a, n in zip(accs, values[(col, "count")], strict=True):
                    a[i + 1] += n
        elif fn == "min":
            for a, v in zip(accs, values[(col, "min")], strict=True):
                a[i] = _min(a[i], v)
        elif fn == "max":
            for a, v in zip(accs, values[(col, "max")], strict=True):
                a[i] = _max(a[i], v)
        elif fn == "first":
            for a, v in zip(accs, values[(col, "first")], strict=True):
                if a[i] is None:
                    a[i] = v
        elif fn == "last":
            for a, v in zip(accs, values[(col, "last")], strict=True):
                if v is not None:
                    a[i] = v
        else:
            for a, vs in zip(accs, values[(col, "distinct")], strict=True):
                a[i].update(v for v in vs if v is not None)
