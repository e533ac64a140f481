"""The gateway's rate limits: a token bucket per client and one per topic.

``await Limiter(client_limit, topic_limits).acquire(client, topic, n)`` decides a request of
``n`` records:

- it needs ``n`` tokens from the client's bucket (``client_limit``; the client is the token's
  ``sub``, else the address; the caller decides) **and** from the topic's bucket
  (``topic_limits[topic]``); a missing limit is no bucket. Tokens are taken from both or from
  neither: a refused request costs nothing;
- refused (``Decision.allowed`` False) when a bucket lacks the tokens, unless every refusing
  limit has ``queue: true`` and the tokens are there within the smallest of their ``max_wait``:
  then the tokens are reserved at once (so waiters are served first come, first served, and a
  later request cannot overtake) and ``acquire`` sleeps until they are due. A waiter whose
  task is cancelled gives its tokens back;
- a request of more records than a bucket's ``burst`` can never pass: it is refused with
  ``Decision.too_large`` set (answer 413, not 429: retrying cannot help).

``Decision.headers`` follow the IETF draft *RateLimit header fields for HTTP*
(draft-ietf-httpapi-ratelimit-headers), for the bucket with the fewest tokens left:
``RateLimit-Limit`` (its burst), ``RateLimit-Remaining`` (whole tokens left after this request),
``RateLimit-Reset`` (whole seconds, rounded up, until it is full again); a refusal adds
``Retry-After`` (whole seconds, rounded up, at least 1, until this request's tokens are there).

Several gateway processes (``processes=N``): each process enforces ``rate / N`` and
``burst / N`` (at least 1) of every limit, the way a stream stage takes its partitions' share
of a cluster-wide limit (``streams.operators.ratelimit.worker_share``), with no coordinator. So
across N processes a topic never accepts more than ``burst + rate x t`` records in ``t``
seconds, whatever the load balancer does; it reaches that only when the balancer spreads the
topic's requests evenly. The same holds per client: a client pinned to one process (sticky
sessions, one keep-alive connection) gets ``1/N`` of its limit.

Client buckets are bounded: a bucket that is full again is the same as a new one and is
dropped (checked from the least recently used end whenever a client is added), and past
``max_clients`` the least recently used bucket is dropped even if not full (that client then
starts again from a full bucket). Memory therefore follows the clients active within a refill
period, not the number of clients ever seen.

Not thread-safe: one ``Limiter`` per event loop; ``acquire`` decides without awaiting, so
concurrent requests on the loop see a consistent state.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from headrace.config.gateway_security import RateLimit
from headrace.ratelimit import TokenBucket

__all__ = ["MAX_CLIENTS", "Decision", "Limiter", "share"]

MAX_CLIENTS = 100_000
"""Default cap on the client buckets one process keeps."""


@dataclass(frozen=True)
class Decision:
    """The outcome of ``Limiter.acquire``.

    ``allowed``: the tokens were taken (and any queueing wait is over). ``retry_after``: when
    refused, seconds until the request could pass (``math.inf`` when ``too_large``); 0 when
    allowed. ``headers``: the ``RateLimit-*`` headers (and ``Retry-After`` when refused) to send
    with the answer, empty when no limit applies. ``too_large``: the request has more records
    than a bucket's burst, so it can never pass. ``waited``: seconds spent queued."""

    allowed: bool
    retry_after: float
    headers: dict[str, str]
    too_large: bool = False
    waited: float = 0.0
    limited_by: str | None = field(default=None)
    """Which limit refused: ``"client"`` or ``"topic"`` (None when allowed)."""


def share(limit: RateLimit, processes: int) -> tuple[float, float]:
    """One process's ``(rate per second, burst)`` of ``limit`` split over ``processes``."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1 (got {processes})")
    return limit.per_second / processes, max(1.0, limit.burst / processes)


class _Bucket:
    """A ``TokenBucket`` and the limit it enforces."""

    __slots__ = ("bucket", "kind", "limit")

    def __init__(self, kind: str, limit: RateLimit, bucket: TokenBucket) -> None:
        self.kind = kind
        self.limit = limit
        self.bucket = bucket


class Limiter:
    """Per-client and per-topic token buckets of one gateway process; see the module doc."""

    def __init__(
        self,
        client_limit: RateLimit | None,
        topic_limits: Mapping[str, RateLimit],
        *,
        processes: int = 1,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """``processes``: how many gateway processes share each limit (see the module doc).
        ``clock`` and ``sleep`` are for tests; ``max_clients`` caps the client buckets."""
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1 (got {max_clients})")
        self._client_limit = client_limit
        self._processes = processes
        self._clock = clock
        self._sleep = sleep
        self._max_clients = max_clients
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        self._topics = {topic: self._make("topic", limit) for topic, limit in topic_limits.items()}
        if client_limit is not None:
            share(client_limit, processes)  # validates processes

    def _make(self, kind: str, limit: RateLimit) -> _Bucket:
        rate, burst = share(limit, self._processes)
        return _Bucket(kind, limit, TokenBucket(rate, 1.0, burst, clock=self._clock))

    @property
    def client_count(self) -> int:
        """Client buckets held now."""
        return len(self._clients)

    def _client(self, client: str) -> _Bucket | None:
        if self._client_limit is None:
            return None
        found = self._clients.get(client)
        if found is not None:
            self._clients.move_to_end(client)
            return found
        self._evict()
        found = self._clients[client] = self._make("client", self._client_limit)
        return found

    def _evict(self) -> None:
        clients = self._clients
        while clients:
            oldest = next(iter(clients.values()))
            if not oldest.bucket.is_full() and len(clients) < self._max_clients:
                break
            clients.popitem(last=False)

    async def acquire(self, client: str, topic: str, n: int) -> Decision:
        """Decide a request of ``n`` records by ``client`` on ``topic``; see the module doc.

        Raises ``ValueError`` for ``n`` < 1."""
        if n < 1:
            raise ValueError(f"a request needs at least 1 record (got n={n})")
        buckets = [b for b in (self._client(client), self._topics.get(topic)) if b is not None]
        if not buckets:
            return Decision(True, 0.0, {})
        waits = [b.bucket.time_until(n) for b in buckets]
        wait = max(waits)
        if wait == 0:
            for b in buckets:
                b.bucket.try_take(n)
            return Decision(True, 0.0, _headers(buckets, None))
        refusing = [b for b, w in zip(buckets, waits, strict=True) if w > 0]
        blocker = max(refusing, key=lambda b: b.bucket.time_until(n))
        if math.isinf(wait):
            return Decision(False, math.inf, _headers(buckets, None), True, 0.0, blocker.kind)
        if all(b.limit.queue for b in refusing) and wait <= min(b.limit.max_wait for b in refusing):
            for b in buckets:
                b.bucket.reserve(n)
            try:
                await self._sleep(wait)
            except asyncio.CancelledError:
                for b in buckets:
                    b.bucket.refund(n)
                raise
            return Decision(True, 0.0, _headers(buckets, None), False, wait)
        return Decision(False, wait, _headers(buckets, wait), False, 0.0, blocker.kind)


def _headers(buckets: list[_Bucket], retry_after: float | None) -> dict[str, str]:
    """The RateLimit-* headers of the bucket with the fewest whole tokens left."""
    tightest = min(buckets, key=lambda b: b.bucket.available())
    bucket = tightest.bucket
    headers = {
        "RateLimit-Limit": str(math.floor(bucket.burst)),
        "RateLimit-Remaining": str(max(0, math.floor(bucket.available()))),
        "RateLimit-Reset": str(math.ceil(bucket.seconds_to_full())),
    }
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return headers
