"""Garbage-collector settings for processes that move records in large batches."""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]


def tune_gc() -> None:
    """Process-wide: make the cyclic GC rare. Call it once the process has imported and built
    what it keeps for its lifetime (frozen: never scanned again).

    A producer or a stream worker keeps tens of thousands of young objects alive per batch
    (records, messages); with the default thresholds the collector rescans them, and every
    long-lived object, over and over (measured: half the parse time of a JSONL object in a
    producer; a quarter of a stream worker's time, mostly full collections). Records hold no
    cycles, so reference counting frees them; a full collection still runs now and then.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
