"""A Faust topic that hands its events to one batch consumer, not to a per-event Stream.

FIELD-NOTES: a naive agent spends its time in Faust's per-event stream machinery (a
``wait_first`` with task creation per event), not in our code. ``BatchTopic`` keeps Faust's
consumer, conductor, assignment, offsets and tables, and replaces only the last hand-off: the
conductor puts each decoded event into a plain list (no queue, no per-event task), and the
stage loop takes the whole list at once with ``take``.

Backpressure: when ``maxsize`` events wait, the conductor's ``put`` blocks until the stage
took them, so Faust stops fetching (nothing is dropped). Acks stay manual: the stage acks each
event after the batch's output is acknowledged, and Faust commits only acked offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
from faust.types import EventT

__all__ = ["BatchBuffer", "BatchTopic"]


class BatchBuffer:
    """The queue-like object the conductor fills (``full``, ``put_nowait_enhanced``, ``put``)."""

    def __init__(self, maxsize: int, batch_size: int) -> None:
        self.maxsize = maxsize
        self.batch_size = batch_size
        self.items: list[EventT[Any]] = []
        self.ready = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()

    def full(self) -> bool:
        return len(self.items) >= self.maxsize

    def qsize(self) -> int:
        return len(self.items)

    def empty(self) -> bool:
        return not self.items

    def put_nowait_enhanced(
        self,
        value: EventT[Any],
        *,
        on_pressure_high: Callable[[], None] | None = None,
        on_pressure_drop: Callable[[], None] | None = None,
    ) -> None:
        self.items.append(value)
        if len(self.items) >= self.batch_size:
            self.ready.set()

    def put_nowait(self, value: EventT[Any]) -> None:
        self.put_nowait_enhanced(value)

    async def put(self, value: EventT[Any]) -> None:
        while self.full():
            self.space.clear()
            await self.space.wait()
        self.put_nowait_enhanced(value)

    async def take(self, within: float) -> list[EventT[Any]]:
        """Up to everything buffered, waiting at most ``within`` seconds for a full batch."""
        if len(self.items) < self.batch_size:
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), timeout=within)
            except TimeoutError:
                pass
        items, self.items = self.items, []
        self.ready.clear()
        self.space.set()
        return items


class BatchTopic(faust.Topic):
    """A raw-bytes topic whose events land in a ``BatchBuffer`` (see the module doc)."""

    def __init__(self, *args: Any, buffer: BatchBuffer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = buffer

    @property
    def queue(self) -> BatchBuffer:  # type: ignore[override]
        return self.buffer

    async def put(self, value: EventT[Any]) -> None:
        await self.buffer.put(value)
