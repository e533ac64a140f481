"""A stage's rate limit: token buckets per stage or per key, split across workers by partitions.

``StageLimiter(spec)`` decides for a batch of records, in order:

- ``on_excess: delay``: every record passes; ``Decision.wait_s`` is how long the agent must
  sleep *before* sending the batch (backpressure: Kafka holds the backlog, nothing is dropped).
  The bucket goes into debt, so a long run drains at exactly ``rate`` after the first ``burst``;
- ``on_excess: shed``: records with a token pass, the rest are marked for ``<topic>.overflow``
  (``Decision.keep[i]`` False), ``wait_s`` is 0.

Cluster-wide rate without a coordinator: a worker holding ``a`` of the input's ``t`` partitions
gets ``rate * a / t`` and ``burst * a / t`` (at least 1): see ``worker_share`` and
``set_share``. Per-key limits (``key:``) keep the full rate per key, on the assumption that the
input is keyed so that one key's records live in one partition (one worker); otherwise the
cluster-wide per-key rate is up to the number of workers times the limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from headrace.config import RateLimit
from headrace.ratelimit import TokenBucket

__all__ = ["Decision", "StageLimiter", "overflow_topic", "worker_share"]

OVERFLOW_SUFFIX = ".overflow"


def overflow_topic(topic: str) -> str:
    """Where shed records go: ``<topic>.overflow`` (``topic`` is the stage's input)."""
    return topic + OVERFLOW_SUFFIX


def worker_share(value: float, assigned: int, total: int) -> float:
    """This worker's part of a cluster-wide ``value``: ``value * assigned / total``.

    Raises ValueError naming the numbers when they make no sense."""
    if total <= 0 or not 0 <= assigned <= total:
        raise ValueError(
            f"partition share needs 0 <= assigned <= total and total > 0 "
            f"(got assigned={assigned}, total={total})"
        )
    return value * assigned / total


@dataclass(frozen=True)
class Decision:
    """What to do with one batch: sleep ``wait_s`` first; send records with ``keep[i]``."""

    wait_s: float
    keep: list[bool]

    @property
    def shed(self) -> int:
        return self.keep.count(False)


class StageLimiter:
    """Token buckets of one stage in one worker; not thread-safe."""

    def __init__(self, spec: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._clock = clock
        self._fraction = 1.0
        self._stage = self._bucket(shared=True)
        self._keys: dict[tuple[Any, ...], TokenBucket] = {}

    def _bucket(self, *, shared: bool) -> TokenBucket:
        f = self._fraction if shared else 1.0
        return TokenBucket(
            self.spec.per_second * f if f > 0 else 1e-9,
            1.0,
            max(1.0, self.spec.burst * f),
            clock=self._clock,
        )

    @property
    def rate_per_s(self) -> float:
        """This worker's current stage-wide rate (records/s)."""
        return self._stage.rate_per_s

    @property
    def burst(self) -> float:
        """Records this worker may send at once: its share of the stage-wide burst, or the
        per-key burst with ``key``."""
        return self.spec.burst if self.spec.key is not None else self._stage.burst

    def set_share(self, assigned: int, total: int) -> None:
        """Take ``assigned`` of ``total`` input partitions' share of the stage-wide rate."""
        self._fraction = worker_share(1.0, assigned, total)
        rate = self.spec.per_second * self._fraction
        burst = max(1.0, self.spec.burst * self._fraction)
        self._stage.set_rate(rate if rate > 0 else 1e-9, 1.0, burst)

    def decide(self, values: Sequence[dict[str, Any]]) -> Decision:
        """Take tokens for ``values`` (in order) and say what to do; see the module doc."""
        n = len(values)
        if self.spec.key is None:
            if self.spec.on_excess == "delay":
                return Decision(self._stage.reserve(n) if n else 0.0, [True] * n)
            return Decision(0.0, [self._stage.try_take() for _ in range(n)])
        fields = self.spec.key
        if self.spec.on_excess == "delay":
            counts: dict[tuple[Any, ...], int] = {}
            for v in values:
                k = tuple(v.get(f) for f in fields)
                counts[k] = counts.get(k, 0) + 1
            wait = max((self._key_bucket(k).reserve(c) for k, c in counts.items()), default=0.0)
            return Decision(wait, [True] * n)
        return Decision(
            0.0, [self._key_bucket(tuple(v.get(f) for f in fields)).try_take() for v in values]
        )

    def _key_bucket(self, key: tuple[Any, ...]) -> TokenBucket:
        bucket = self._keys.get(key)
        if bucket is None:
            bucket = self._keys[key] = self._bucket(shared=False)
        return bucket
