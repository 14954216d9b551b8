"""Capabilities: what a stage declares it does, so the runner and the job layer never guess
from class names (docs/concepts/capabilities.md)."""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    """One declared behaviour of a stage. A stage's ``capabilities`` is a frozenset of these;
    wrappers (retry, error policies) report the capabilities of what they wrap."""

    CDC = "cdc"
    """Source: streams changes (inserts, updates, deletes) and runs until stopped."""
    PASSES = "passes"
    """Source: finite; marks the last batch of each pass (``Batch.end_of_pass``) and knows
    where the next pass starts (:meth:`Source.next_pass`)."""
    TRANSACTIONAL = "transactional"
    """Sink: writes the pipeline's checkpoint in each batch's own transaction and hands out
    the store that reads it (:meth:`Sink.checkpoint_store`): exactly-once effect."""
    CHANGES = "changes"
    """Sink: applies change batches (updates, deletes, truncates), not only inserts."""
    KEYED = "keyed"
    """Sink: upserts on a primary key (replays are harmless)."""
    REVERSIBLE = "reversible"
    """Sink: can record what a run changed (prior values, the previous table) and revert it
    (:class:`etlsync.core.revert.Reversible`: ``journal`` / ``revert`` / ``forget``)."""
    STATEFUL = "stateful"
    """Operator: keeps state across batches and stores it with the checkpoint
    (:meth:`Operator.snapshot_state` / :meth:`Operator.restore_state`)."""


def capabilities_of(stage: object) -> frozenset[Capability]:
    """The capabilities ``stage`` declares (none if it declares nothing)."""
    caps = getattr(stage, "capabilities", None)
    return frozenset(caps) if caps else frozenset()


def has(stage: object, capability: Capability) -> bool:
    """Whether ``stage`` declares ``capability``."""
    return capability in capabilities_of(stage)
