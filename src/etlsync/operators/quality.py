"""Data quality rules: not null, unique, range, regex, accepted values, referential and row
expressions; failing rows are warned about, quarantined (dead letters) or fail the run."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from etlsync.core.batch import Batch, Op
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.schema import Schema
from etlsync.core.stages import Operator, OperatorOutput, StageContext
from etlsync.log import get_logger
from etlsync.operators._common import Rejects, RowsRejected, cap_error, check_columns, keep_rows
from etlsync.operators.expr import compile_expr
from etlsync.operators.lookup import Lookup, TtlCache, resolve

KINDS = ("not_null", "unique", "range", "regex", "accepted", "referential", "expression")
ACTIONS = ("warn", "quarantine", "fail")


@dataclass
class Rule:
    """One rule. ``kind`` is one of :data:`KINDS`; ``action`` ``warn`` (count and log, keep
    the row), ``quarantine`` (remove the row, to the dead-letter sink with the rule) or
    ``fail`` (stop the run)."""

    kind: str
    columns: list[str] = field(default_factory=list)
    action: str = "quarantine"
    name: str = ""
    min: Any = None
    max: Any = None
    pattern: str | None = None
    values: list[Any] | None = None
    expression: str | None = None
    lookup: Lookup | None = None

    def __post_init__(self) -> None:
        where = f"quality rule {self.name or self.kind!r}"
        if self.kind not in KINDS:
            raise ConfigError(f"{where}: unknown kind {self.kind!r}; expected one of "
                              f"{', '.join(KINDS)}")
        if self.action not in ACTIONS:
            raise ConfigError(f"{where}: action {self.action!r} is not one of {', '.join(ACTIONS)}")
        self.columns = check_columns(where, self.columns, "columns")
        needs_column = self.kind != "expression"
        if needs_column and not self.columns:
            raise ConfigError(f"{where}: name the column(s) it checks")
        if self.kind == "range" and self.min is None and self.max is None:
            raise ConfigError(f"{where}: a range needs min, max or both")
        if self.kind == "regex":
            if not self.pattern:
                raise ConfigError(f"{where}: a regex rule needs a pattern")
            try:
                self._re = re.compile(self.pattern)
            except re.error as exc:
                raise ConfigError(f"{where}: bad pattern {self.pattern!r}: {exc}") from None
        if self.kind == "accepted" and not self.values:
            raise ConfigError(f"{where}: accepted needs values")
        if self.kind == "referential" and self.lookup is None:
            raise ConfigError(f"{where}: referential needs a lookup")
        if self.kind == "expression":
            if not self.expression:
                raise ConfigError(f"{where}: an expression rule needs an expression")
            self._expr = compile_expr(self.expression)[0]
        if not self.name:
            target = self.expression if self.kind == "expression" else ", ".join(self.columns)
            self.name = f"{self.kind}({target})"

    @classmethod
    def from_spec(cls, spec: Any) -> Rule:
        """A job file's rule: ``{not_null: [id, email]}``, ``{range: amount, min: 0}``,
        ``{regex: email, pattern: ...}``, ``{accepted: status, values: [...]}``, ``{unique:
        id}``, ``{referential: customer_id, lookup: {...}}``, ``{expression: "..."}``, each
        with optional ``action`` and ``name``."""
        if isinstance(spec, Rule):
            return spec
        if not isinstance(spec, dict):
            raise ConfigError(f"quality: a rule is a mapping such as {{not_null: id}}, "
                              f"got {spec!r}")
        kinds = [k for k in spec if k in KINDS]
        if len(kinds) != 1:
            raise ConfigError(f"quality: rule {spec!r} must have exactly one of "
                              f"{', '.join(KINDS)}")
        kind = kinds[0]
        opts = {k: v for k, v in spec.items() if k != kind}
        unknown = set(opts) - {"action", "name", "min", "max", "pattern", "values", "lookup"}
        if unknown:
            raise ConfigError(f"quality: rule {kind}: unknown option(s) {sorted(unknown)}")
        if kind == "expression":
            return cls(kind, expression=spec[kind], **opts)
        if kind == "referential" and isinstance(opts.get("lookup"), dict):
            from etlsync.operators.manifest import build_lookup

            opts["lookup"] = build_lookup(opts["lookup"], f"quality.{kind}.lookup")
        return cls(kind, columns=spec[kind], **opts)

    def passes(self, values: Sequence[Any]) -> list[bool]:
        """Stateless rules: whether each value (a tuple per row of ``columns``) passes."""
        kind = self.kind
        if kind == "not_null":
            return [all(v is not None for v in t) for t in values]
        if kind == "range":
            lo, hi = self.min, self.max
            return [all(v is None or ((lo is None or v >= lo) and (hi is None or v <= hi))
                        for v in t) for t in values]
        if kind == "regex":
            search = self._re.search
            return [all(v is None or search(str(v)) is not None for v in t) for t in values]
        if kind == "accepted":
            allowed = set(self.values or ())
            return [all(v is None or v in allowed for v in t) for t in values]
        raise AssertionError(kind)


class Quality(Operator):
    """Check every row against ``rules`` (:class:`Rule` objects or job-file mappings).

    A row failing a ``quarantine`` rule is removed and goes to the dead-letter sink (or,
    with ``quarantine_to="side_output"``, to the stream ``<stream>.quarantine``) with the
    rules it failed; a ``warn`` rule only counts and logs (the first ``log_limit`` rows);
    a ``fail`` rule stops the run with :class:`~etlsync.operators.RowsRejected`. Nulls pass
    every rule but ``not_null`` (as in SQL constraints); a range compares values as they
    are (cast first). ``unique`` remembers the values of passing rows in the checkpointed
    state (``STATEFUL``; at most ``max_keys``, then a clear error). ``referential`` looks
    the values up in a :class:`~etlsync.operators.lookup.Lookup` (batched, cached).
    Counters per rule (``checked``, ``failed``) are in the stage's metrics and the run
    summary (``summary.stages["op:quality"].extra["rules"]``).
    """

    def __init__(self, rules: Sequence[Rule | dict[str, Any]], *,
                 quarantine_to: str = "dead_letter", dead_letter: Any = None,
                 max_keys: int = 1_000_000, log_limit: int = 10,
                 name: str = "quality") -> None:
        self.name = name
        self.rules = [Rule.from_spec(r) for r in rules]
        if not self.rules:
            raise ConfigError(f"quality {name!r}: give at least one rule")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"quality {name!r}: rule names repeat: {names}")
        if quarantine_to not in ("dead_letter", "side_output"):
            raise ConfigError(f"quality {name!r}: quarantine_to is dead_letter or side_output")
        self.rejects = Rejects(f"op:{name}", quarantine_to, dead_letter, "quarantine")
        self.max_keys, self.log_limit = max_keys, log_limit
        self.counts = {r.name: {"checked": 0, "failed": 0} for r in self.rules}
        self.unique: dict[str, set[Any]] = {r.name: set() for r in self.rules
                                            if r.kind == "unique"}
        self.caches = {r.name: TtlCache(100_000, 300.0) for r in self.rules
                       if r.kind == "referential"}
        self.warned = 0
        self.log = get_logger(stage=f"op:{name}")
        if self.unique:
            self.capabilities = frozenset({Capability.STATEFUL})

    def snapshot_state(self) -> Any:
        return {"unique": {k: list(v) for k, v in self.unique.items()}}

    def restore_state(self, state: Any) -> None:
        saved = (state or {}).get("unique", {})
        self.unique = {k: {tuple(x) if isinstance(x, list) else x for x in saved.get(k, ())}
                       for k in self.unique}

    @property
    def rejected(self) -> int:
        """Rows quarantined (the job summary's "rejected")."""
        return self.rejects.count

    def extra_metrics(self) -> dict[str, Any]:
        return {"rules": {k: dict(v) for k, v in self.counts.items()},
                "quarantined": self.rejects.count, "warned": self.warned}

    def transform_schema(self, schema: Schema) -> Schema:
        return schema

    async def open(self, context: StageContext) -> None:
        self.rejects.bind(context)
        if any(r.action == "quarantine" for r in self.rules):
            await self.rejects.open(context)
        for r in self.rules:
            if r.lookup is not None:
                await r.lookup.open()

    async def close(self) -> None:
        for r in self.rules:
            if r.lookup is not None:
                await r.lookup.close()
        await self.rejects.close()

    async def process(self, batch: Batch) -> OperatorOutput:
        n = len(batch)
        if not n:
            return batch
        ops = batch.ops
        checked = [i for i in range(n) if ops is None or ops[i] in (Op.INSERT, Op.UPDATE)]
        failures: dict[int, list[Rule]] = {}
        for rule in self.rules:
            if rule.kind in ("unique",):
                continue
            ok = await self._check(rule, batch, checked)
            self.counts[rule.name]["checked"] += len(checked)
            for i, good in zip(checked, ok, strict=True):
                if not good:
                    failures.setdefault(i, []).append(rule)
        staged: dict[str, list[Any]] = {}
        for rule in self.rules:
            if rule.kind != "unique":
                continue
            seen = self.unique[rule.name]
            new: set[Any] = set()
            values = batch.view(rule.columns)
            self.counts[rule.name]["checked"] += len(checked)
            for i in checked:
                blocked = any(r.action != "warn" for r in failures.get(i, ()))
                v = values[i] if len(rule.columns) > 1 else values[i][0]
                if v is None or (len(rule.columns) > 1 and None in v):
                    continue
                if v in seen or v in new:
                    failures.setdefault(i, []).append(rule)
                elif not blocked:
                    new.add(v)
            staged[rule.name] = list(new)
        for rule in self.rules:
            failed = sum(1 for rs in failures.values() if rule in rs)
            self.counts[rule.name]["failed"] += failed
        fatal = [i for i, rs in failures.items() if any(r.action == "fail" for r in rs)]
        if fatal:
            i = min(fatal)
            rule = next(r for r in failures[i] if r.action == "fail")
            raise RowsRejected(f"quality {self.name!r}: stream {batch.stream!r}: row "
                               f"{batch.rows[i]!r} fails rule {rule.name!r} (action: fail)")
        for name, values in staged.items():
            self.unique[name].update(values)
            if len(self.unique[name]) > self.max_keys:
                raise cap_error(f"quality {self.name!r} rule {name!r}",
                                len(self.unique[name]), self.max_keys, "values")
        quarantined = sorted(i for i, rs in failures.items()
                             if any(r.action == "quarantine" for r in rs))
        for i, rs in sorted(failures.items()):
            if all(r.action == "warn" for r in rs):
                self.warned += 1
                if self.warned <= self.log_limit:
                    self.log.warning("row fails a quality rule", stream=batch.stream,
                                     rules=[r.name for r in rs], row=batch.rows[i])
        out: list[Batch] = []
        if quarantined:
            rows = batch.rows
            side = await self.rejects.reject(batch, [rows[i] for i in quarantined],
                                             [self._reason(failures[i]) for i in quarantined],
                                             error_type="QualityRule")
            drop = set(quarantined)
            out.append(keep_rows(batch, [i for i in range(n) if i not in drop]))
            if side is not None:
                out.append(side)
            return out
        return batch

    @staticmethod
    def _reason(rules: list[Rule]) -> str:
        return "fails quality rule(s): " + ", ".join(r.name for r in rules)

    async def _check(self, rule: Rule, batch: Batch, checked: list[int]) -> list[bool]:
        if rule.kind == "expression":
            rows = batch.rows
            expr = rule._expr
            return [bool(expr(rows[i])) for i in checked]
        values = batch.view(rule.columns)
        picked = [values[i] for i in checked]
        if rule.kind == "referential":
            assert rule.lookup is not None
            found = await resolve(rule.lookup, self.caches[rule.name],
                                  [v for v in picked if None not in v])
            return [None in v or found.get(v) is not None for v in picked]
        return rule.passes(picked)
