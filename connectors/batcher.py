"""A batch that fills up to ``max_records``/``max_bytes`` or until ``linger`` has passed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Batch"]

T = TypeVar("T")


class Batch(Generic[T]):
    """Items in arrival order. ``full`` or ``due`` says it is time to write; not thread-safe.

    Linger counts from the first item added, so a lone record waits at most ``linger``.
    """

    def __init__(
        self, max_records: int, max_bytes: int, linger: float, clock: Callable[[], float]
    ) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.linger = linger
        self._clock = clock
        self.items: list[T] = []
        self.bytes = 0
        self._started: float | None = None

    def add(self, item: T, size: int) -> None:
        if not self.items:
            self._started = self._clock()
        self.items.append(item)
        self.bytes += size

    def __len__(self) -> int:
        return len(self.items)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.max_records or self.bytes >= self.max_bytes

    def due(self) -> bool:
        """True when full, or non-empty and lingering for ``linger`` seconds."""
        if self.full:
            return True
        return self._started is not None and self._clock() - self._started >= self.linger

    def remaining_linger(self) -> float:
        """Seconds until the batch is due by time (the linger when empty)."""
        if self._started is None:
            return self.linger
        return max(0.0, self.linger - (self._clock() - self._started))

    def take(self) -> list[T]:
        """The items, leaving the batch empty."""
        items, self.items, self.bytes, self._started = self.items, [], 0, None
        return items
