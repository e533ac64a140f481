"""When an aggregate's idle timer next closes a window, so a simulation can jump there.

``AggregateStage.tick(wall_ms, caught_up)`` closes, for each caught-up partition quiet for
at least ``idle_ms``, the windows that end (plus grace) by ``base_wm + (wall_ms -
base_wall)``: event time moves on like wall time since the partition's last record. So the
first wall time at which a tick closes a window of a partition is::

    base_wall + max(idle_ms, earliest window end + grace - base_wm)

The worker ticks every 0.2 s (the batch wait), so it closes the window within 0.2 s of
that moment; a simulation ticks exactly then instead of 5 ticks a second for the whole
``advance``. This reads the stage's per-partition state (``parts``: ``base_wm``,
``base_wall``, the aggregator's open ``windows``, ``size_ms`` and ``grace_ms``), which
``tests/unit/pipeline_test`` pins against ``tick`` itself.
"""

from __future__ import annotations

from streams.stages.aggregate import AggregateStage
from streams.stages.base import StageProcessor

__all__ = ["next_due"]


def next_due(processor: StageProcessor, caught_up: frozenset[int]) -> int | None:
    """The earliest wall time (ms) at which ``processor.tick`` closes a window of one of the
    ``caught_up`` partitions; None if it never will without new input (or the processor is
    not an aggregate)."""
    if not isinstance(processor, AggregateStage):
        return None
    best: int | None = None
    for partition, part in processor.parts.items():
        agg = part.agg
        if partition not in caught_up or part.base_wm is None or part.base_wall is None:
            continue
        if not agg.windows:
            continue
        closes = min(start for _group, start in agg.windows) + agg.size_ms + agg.grace_ms
        due = part.base_wall + max(processor.idle_ms, closes - part.base_wm)
        best = due if best is None else min(best, due)
    return best
