"""Exponential backoff with full jitter, capped: the wait before retry ``n``."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """``delay(attempt)`` = uniform(base/2, min(cap, base * 2**attempt)); never above ``cap``.

    A server's own hint (``retry_after``) raises the floor of the wait. ``rand`` is injectable
    so tests are deterministic.
    """

    def __init__(
        self,
        base: float = 0.1,
        cap: float = 30.0,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap (got base={base}, cap={cap})")
        self.base = base
        self.cap = cap
        self._rand = rand

    def delay(self, attempt: int, retry_after: float = 0.0) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        high = min(self.cap, self.base * (2 ** min(attempt, 30)))
        wait = self._rand(min(high, self.base / 2), high)
        return min(self.cap, max(wait, retry_after))
