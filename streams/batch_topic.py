"""Batch hand-off between Faust's fetcher and a stage loop: raw records, whole batches.

FIELD-NOTES and a py-spy profile: a naive agent spends its time in Faust's per-message
machinery (``Consumer._drain_messages`` runs ``wait_first`` per message, creating a task and a
future each time, then the conductor builds a ``Message`` and an ``Event`` per message). For
the topics a stage reads, ``streams.consumer.BatchConsumer`` skips all of that: it appends each
fetched partition batch of aiokafka records to the topic's ``BatchBuffer`` in one call, and
the stage loop takes everything buffered at once with ``take``.

Contracts:

- ``put_many`` blocks while ``maxsize`` records wait (backpressure: Faust stops fetching,
  nothing is dropped), and drops the batch if ``still_valid()`` turned false meanwhile (a
  rebalance started: the fetcher re-reads from the committed offsets afterwards);
- ``take`` hands out one batch and marks the buffer *busy* until ``done()`` (a stage loop
  that overlaps batches calls it only when none is in flight); ``idle()`` waits for that, so
  a rebalance or a shutdown can let the batches in flight finish and ack;
- ``clear`` drops what waits (at a rebalance, like Faust's ``flow_control.clear``);
- ``close`` makes ``take`` return nothing from then on (shutdown).

``BatchTopic`` is the Faust topic the stage subscribes to: Faust still assigns, seeks and
commits it (offsets acked by the stage, see ``BatchConsumer.ack_offsets``), and recovers the
tables co-partitioned with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust

__all__ = ["BatchBuffer", "BatchTopic"]


class BatchBuffer:
    """Records waiting for one stage loop; see the module doc."""

    def __init__(self, maxsize: int, batch_size: int) -> None:
        self.maxsize = maxsize
        self.batch_size = batch_size
        self.items: list[Any] = []
        self.ready = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.closed = False

    def qsize(self) -> int:
        return len(self.items)

    async def put_many(self, records: list[Any], still_valid: Callable[[], bool]) -> bool:
        """Append ``records`` once there is room; False (dropped) if ``still_valid()`` failed."""
        while len(self.items) >= self.maxsize and not self.closed:
            self.space.clear()
            await self.space.wait()
        if self.closed or not still_valid():
            return False
        self.items.extend(records)
        if len(self.items) >= self.batch_size:
            self.ready.set()
        return True

    async def take(self, within: float, limit: int | None = None) -> list[Any]:
        """Everything buffered (at most ``limit``), waiting at most ``within`` s for
        ``batch_size`` records. The buffer is busy from here until ``done()``."""
        if self.closed:
            await asyncio.sleep(within)
            return []
        wanted = self.batch_size if limit is None else min(limit, self.batch_size)
        if len(self.items) < wanted:
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), timeout=within)
            except TimeoutError:
                pass
        if self.closed:
            return []
        if limit is not None and len(self.items) > limit:
            items, self.items = self.items[:limit], self.items[limit:]
        else:
            items, self.items = self.items, []
        self.ready.clear()
        self.space.set()
        self._idle.clear()
        return items

    def done(self) -> None:
        """The batch from the last ``take`` is handled (acked, or given up)."""
        self._idle.set()

    async def idle(self, timeout: float) -> bool:
        """Wait until no batch is in flight; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout)
        except TimeoutError:
            return False
        return True

    def clear(self) -> int:
        """Drop the waiting records (they are fetched again); how many were dropped."""
        n = len(self.items)
        self.items = []
        self.space.set()
        return n

    def close(self) -> None:
        """No more batches: ``take`` returns nothing, ``put_many`` drops."""
        self.closed = True
        self.clear()
        self.ready.set()


class BatchTopic(faust.Topic):
    """A raw-bytes topic read in batches through ``buffer`` (see the module doc)."""

    def __init__(self, *args: Any, buffer: BatchBuffer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = buffer
