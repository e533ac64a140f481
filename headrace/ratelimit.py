"""Token bucket rate limiting with an injectable clock (so tests use simulated time).

``TokenBucket(rate, per, burst)`` allows ``rate`` tokens per ``per`` seconds on average and at
most ``burst`` at once. ``reserve(n)`` takes ``n`` tokens now and returns how many seconds the
caller must wait before acting (0 when tokens were available): callers that apply
backpressure sleep that long; callers that shed use ``try_take`` instead. Callers that check
several buckets before taking from any (the gateway: a client's and a topic's) use
``time_until(n)`` (nothing taken), then ``try_take``; ``refund`` gives back tokens of a
reservation that was not used; ``available``, ``seconds_to_full`` and ``is_full`` report the
state (rate-limit headers, evicting idle buckets).
"""

from __future__ import annotations

import math
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

    def available(self) -> float:
        """Tokens there now (negative while a ``reserve`` debt is being paid back)."""
        self._refill()
        return self._tokens

    def time_until(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are there (0 if now); nothing is taken.

        ``math.inf`` when ``n`` exceeds ``burst``: such a request never fits."""
        if n > self.burst:
            return math.inf
        self._refill()
        if self._tokens >= n:
            return 0.0
        return (n - self._tokens) / self.rate_per_s

    def seconds_to_full(self) -> float:
        """Seconds until the bucket is full again (0 if it is)."""
        self._refill()
        return max(0.0, self.burst - self._tokens) / self.rate_per_s

    def is_full(self) -> bool:
        """True when the bucket holds ``burst`` tokens: it is then the same as a new one."""
        self._refill()
        return self._tokens >= self.burst

    def refund(self, n: float = 1.0) -> None:
        """Give back ``n`` tokens taken but not used (never above ``burst``)."""
        self._refill()
        self._tokens = min(self.burst, self._tokens + n)
