"""Whether a worker is settled: it holds partitions, is not rebalancing, and its tables are
recovered (what ``/readyz`` answers 200 for, in ``streams.health``)."""

from __future__ import annotations

from typing import Any

__all__ = ["settled"]


def settled(app: Any) -> bool:
    """The worker holds partitions, is not rebalancing, and its tables are recovered
    (``streams.runner`` restores quiet partitions only then)."""
    try:
        if not app.consumer.assignment() or app.rebalancing:
            return False
    except Exception:  # the consumer is not started yet
        return False
    recovery = getattr(app.tables, "recovery", None)
    return recovery is None or (
        recovery.completed.is_set() and not getattr(recovery, "in_recovery", False)
    )
