"""Dependencies between jobs: who runs after whom, and cycles named at load."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from etlsync.core.errors import ConfigError


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in the graph ``node -> nodes it points to``, as ``[a, b, ..., a]``, or
    ``None``. Deterministic: nodes are visited in sorted order."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found is not None:
                return found
    return None


class JobGraph:
    """``depends_on`` (a job runs after every job it depends on succeeded: fan-in) and
    job-completion triggers (a job runs whenever another finishes with a given status)."""

    def __init__(self, depends_on: Mapping[str, Iterable[str]],
                 completion: Mapping[str, Iterable[str]] | None = None) -> None:
        self.depends_on = {job: sorted(set(deps)) for job, deps in depends_on.items()}
        completion = completion or {}
        edges: dict[str, set[str]] = {job: set() for job in self.depends_on}
        for job, deps in self.depends_on.items():
            for dep in deps:
                edges.setdefault(dep, set()).add(job)
        for job, sources in completion.items():
            for src in sources:
                edges.setdefault(src, set()).add(job)
        known = set(self.depends_on) | set(completion)
        for job, targets in list(edges.items()):
            if job not in known:
                raise ConfigError(f"jobs.{sorted(t for t in targets)[0]}: depends on unknown job "
                                  f"{job!r} (known: {', '.join(sorted(known))})")
        cycle = find_cycle(edges)
        if cycle is not None:
            raise ConfigError(f"jobs: dependency cycle: {' -> '.join(cycle)} (a job cannot "
                              "wait for itself)")
        self.downstream = {job: sorted(t) for job, t in edges.items()}

    def dependents(self, job: str) -> list[str]:
        """Jobs that depend on ``job`` through ``depends_on``."""
        return sorted(j for j, deps in self.depends_on.items() if job in deps)

    def order(self) -> list[str]:
        """Every job, each after the jobs it depends on."""
        done: list[str] = []
        seen: set[str] = set()

        def add(job: str) -> None:
            if job in seen:
                return
            seen.add(job)
            for dep in self.depends_on.get(job, ()):
                add(dep)
            done.append(job)
        for job in sorted(self.depends_on):
            add(job)
        return done
