"""Reverting one run's writes: the contract a ``REVERSIBLE`` sink implements.

A sink that declares :attr:`~etlsync.core.capabilities.Capability.REVERSIBLE` implements
:class:`Reversible`. Before a run, whoever runs the pipeline (``etlsync serve``) calls
``sink.journal(run_id)``; the sink then records, **in the same transactions as the data**,
what that run changed: the prior values of rows it updated or deleted, the keys of rows it
inserted, the table it replaced (kept until :meth:`Reversible.forget`), the columns and
tables it created. ``revert(run_id)`` undoes exactly that, newest change first, in one
transaction, and can store the pipeline's checkpoint from before the run in it (``rewind``),
so data and position go back together. See docs/concepts/rollback.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from etlsync.core.capabilities import Capability, has
from etlsync.core.checkpoint import Checkpoint


class RevertError(Exception):
    """A run cannot be reverted (nothing was recorded for it, or later changes by another
    run touch the same rows). The message says which and why; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Rewind:
    """Store ``checkpoint`` for ``pipeline`` in the revert's transaction (``None``: delete the
    stored checkpoint: the next run starts from the beginning). Given only to the sink that
    owns the pipeline's checkpoint."""

    pipeline: str
    checkpoint: Checkpoint | None


@dataclass(slots=True)
class RevertReport:
    """What :meth:`Reversible.revert` did."""

    target: str
    rows_deleted: int = 0
    """Rows the run inserted, deleted again."""
    rows_restored: int = 0
    """Rows the run updated or deleted, put back with their prior values."""
    tables_restored: int = 0
    """Tables the run replaced (overwrite), put back; tables it created, dropped."""
    columns_dropped: list[str] = field(default_factory=list)
    """Columns the run added (schema evolution), dropped again."""
    checkpoint_rewound: bool = False

    def __str__(self) -> str:
        parts = [f"{self.rows_deleted} inserted rows deleted",
                 f"{self.rows_restored} rows restored"]
        if self.tables_restored:
            parts.append(f"{self.tables_restored} table(s) restored")
        if self.columns_dropped:
            parts.append(f"columns dropped: {', '.join(self.columns_dropped)}")
        if self.checkpoint_rewound:
            parts.append("checkpoint rewound")
        return f"{self.target}: " + ", ".join(parts)


@runtime_checkable
class Reversible(Protocol):
    """What a ``REVERSIBLE`` sink implements (wrappers delegate it to the sink they wrap)."""

    def journal(self, run_id: str | None) -> None:
        """Record what the next ``open``..``close`` writes under ``run_id`` (``None``: record
        nothing, the default)."""

    async def revert(self, run_id: str, rewind: Rewind | None = None,
                     *, force: bool = False) -> RevertReport:
        """Undo what run ``run_id`` wrote, newest change first, in one transaction.

        :param rewind: also store the checkpoint from before the run, in that transaction.
        :param force: revert even when later runs changed the same target (their changes to
            the same rows are overwritten by the prior values).
        :raises RevertError: nothing recorded for the run, or (without ``force``) a later
            run changed the target; nothing was changed.
        """
        ...

    async def forget(self, run_ids: Sequence[str]) -> int:
        """Drop what was recorded for ``run_ids`` (retention): they can no longer be
        reverted. Returns how many records (rows and kept tables) were dropped."""
        ...


class Journaled:
    """The ``journal`` switch of a :class:`Reversible` sink (a mixin): ``_journal_run`` is
    the run being recorded, ``None`` outside journaled runs."""

    _journal_run: str | None = None

    def journal(self, run_id: str | None) -> None:
        """Record what the next run (``open`` .. ``close``) changes under ``run_id``."""
        self._journal_run = run_id


def reversible(sink: object) -> Reversible | None:
    """``sink`` as a :class:`Reversible` if it declares ``REVERSIBLE``, else ``None``."""
    if has(sink, Capability.REVERSIBLE) and isinstance(sink, Reversible):
        return sink
    return None
