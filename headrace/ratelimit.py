"""Token bucket rate limiting with an injectable clock (so tests use simulated time).

``TokenBucket(rate, per, burst)`` allows ``rate`` tokens per ``per`` seconds on average and at
most ``burst`` at once. ``reserve(n)`` takes ``n`` tokens now and returns how many seconds the
caller must wait before acting (0 when tokens were available): callers that apply
backpressure sleep that long; callers that shed use ``try_take`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """A token bucket; not thread-safe (one per agent/sink loop)."""

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError(f"rate and per must be > 0 (got rate={rate}, per={per})")
        self._clock = clock
        self.set_rate(rate, per, burst)
        self._tokens = self.burst
        self._last = clock()

    def set_rate(self, rate: float, per: float = 1.0, burst: float | None = None) -> None:
        """Change the rate (e.g. a worker's share of a cluster-wide rate); keeps the tokens."""
        self.rate_per_s = rate / per
        self.burst = float(burst if burst is not None else rate)
        if self.burst < 1:
            self.burst = 1.0

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)

    def try_take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are there now; False (nothing taken) otherwise."""
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def reserve(self, n: float = 1.0) -> float:
        """Take ``n`` tokens, going into debt if needed; return the seconds to wait (>= 0)."""
        self._refill()
        self._tokens -= n
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate_per_s
