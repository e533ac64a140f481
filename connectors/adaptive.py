"""A write rate that halves on throttling and recovers slowly (additive increase).

Wraps ``TokenBucket``: ``acquire(n)`` returns the seconds to wait before writing ``n`` items;
``throttled()`` halves the rate (not below ``floor``); ``succeeded()`` adds ``step`` per
call up to the configured ceiling. One instance per sink, used by the runner's thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from headrace.ratelimit import TokenBucket

__all__ = ["AdaptiveRate"]


class AdaptiveRate:
    """AIMD rate limit in items per second under ``ceiling``."""

    def __init__(
        self,
        ceiling: float,
        *,
        floor: float = 1.0,
        recover_fraction: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.step = max(ceiling * recover_fraction, 0.1)
        self.rate = ceiling
        self._bucket = TokenBucket(ceiling, 1.0, clock=clock)

    def acquire(self, n: int) -> float:
        """Take ``n`` tokens; return how long to wait first (0 when within the rate)."""
        return self._bucket.reserve(n)

    def throttled(self) -> None:
        """The destination pushed back: halve the rate."""
        self._set(max(self.floor, self.rate / 2))

    def succeeded(self) -> None:
        """A write went through without throttling: creep back towards the ceiling."""
        if self.rate < self.ceiling:
            self._set(min(self.ceiling, self.rate + self.step))

    def _set(self, rate: float) -> None:
        self.rate = rate
        self._bucket.set_rate(rate, 1.0)
