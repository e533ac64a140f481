"""Gateway rate limits on a simulated clock: both buckets or neither, headers, queueing,
the split over processes, and bounded client buckets."""

from __future__ import annotations

import asyncio
import math

import pytest

from gateway.limits import Decision, Limiter, share
from headrace.config.gateway_security import RateLimit
from headrace.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limit(rate: float, burst: float | None = None, **kw: object) -> RateLimit:
    return RateLimit.model_validate({"rate": rate, "burst": burst, **kw})


def make(
    client: RateLimit | None, topics: dict[str, RateLimit], clock: Clock, **kw: int
) -> Limiter:
    return Limiter(client, topics, clock=clock, sleep=clock.sleep, **kw)


def run(limiter: Limiter, client: str = "c", topic: str = "t", n: int = 1) -> Decision:
    return asyncio.run(limiter.acquire(client, topic, n))


def test_burst_then_refused_with_retry_after_and_ratelimit_headers() -> None:
    clock = Clock()
    limiter = make(None, {"t": limit(200, 400)}, clock)
    first = run(limiter, n=1)
    assert first.allowed and first.retry_after == 0
    assert first.headers == {
        "RateLimit-Limit": "400",
        "RateLimit-Remaining": "399",
        "RateLimit-Reset": "1",
    }
    assert run(limiter, n=399).allowed
    refused = run(limiter, n=10)
    assert not refused.allowed and refused.limited_by == "topic"
    assert refused.retry_after == pytest.approx(10 / 200)
    assert refused.headers["Retry-After"] == "1"  # whole seconds, rounded up, >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == "2"  # 400 tokens at 200/s
    clock.now += 10 / 200
    assert run(limiter, n=10).allowed


def test_retry_after_rounds_up() -> None:
    clock = Clock()
    limiter = make(None, {"t": limit(1, 1, per="3s")}, clock)
    assert run(limiter).allowed
    refused = run(limiter)
    assert refused.retry_after == pytest.approx(3.0)
    assert refused.headers["Retry-After"] == "3"
    clock.now += 0.5
    assert run(limiter).headers["Retry-After"] == "3"  # 2.5 s -> 3


def test_tokens_are_taken_from_both_buckets_or_neither() -> None:
    clock = Clock()
    limiter = make(limit(100, 100), {"t": limit(10, 10), "u": limit(100)}, clock)
    assert run(limiter, "c", "t", 10).allowed  # client 90 left, t 0 left
    refused = run(limiter, "c", "t", 5)
    assert not refused.allowed and refused.limited_by == "topic"
    # The refusal cost the client nothing: it still has 90 tokens for another topic.
    ok = run(limiter, "c", "u", 90)
    assert ok.allowed
    assert ok.headers["RateLimit-Remaining"] == "0"  # the client's (u has 10 left)
    refused = run(limiter, "c", "u", 1)
    assert not refused.allowed and refused.limited_by == "client"
    # ... and the topic bucket u was not charged by the client's refusal
    assert run(limiter, "other", "u", 10).allowed
    assert not run(limiter, "other", "u", 1).allowed


def test_headers_name_the_bucket_with_the_fewest_tokens() -> None:
    clock = Clock()
    limiter = make(limit(5, 5), {"t": limit(100)}, clock)
    decision = run(limiter, n=2)
    assert decision.headers["RateLimit-Limit"] == "5"
    assert decision.headers["RateLimit-Remaining"] == "3"


def test_no_limit_no_headers() -> None:
    limiter = make(None, {"t": limit(1)}, Clock())
    decision = run(limiter, topic="free", n=10_000)
    assert decision == Decision(True, 0.0, {})


def test_a_request_larger_than_the_burst_can_never_pass() -> None:
    limiter = make(None, {"t": limit(200, 400, queue=True, max_wait="10s")}, Clock())
    decision = run(limiter, n=401)
    assert not decision.allowed and decision.too_large
    assert math.isinf(decision.retry_after)
    assert "Retry-After" not in decision.headers
    assert run(limiter, n=400).allowed  # it took nothing


def test_n_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1 record"):
        run(make(None, {}, Clock()), n=0)


def test_queue_holds_a_request_up_to_max_wait() -> None:
    clock = Clock()
    limiter = make(None, {"t": limit(100, 100, queue=True, max_wait="500ms")}, clock)
    assert run(limiter, n=100).allowed
    held = run(limiter, n=20)  # 20 tokens take 0.2 s
    assert held.allowed and held.waited == pytest.approx(0.2)
    assert clock.slept == [pytest.approx(0.2)]
    too_long = run(limiter, n=60)  # 0.6 s > max_wait: refused at once, nothing reserved
    assert not too_long.allowed and too_long.retry_after == pytest.approx(0.6)
    assert clock.slept == [pytest.approx(0.2)]


def test_queued_requests_are_served_in_arrival_order() -> None:
    clock = Clock()
    sleeps: list[float] = []

    async def record(seconds: float) -> None:  # the clock stands still: all arrive at once
        sleeps.append(seconds)

    limiter = Limiter(
        None, {"t": limit(10, 10, queue=True, max_wait="5s")}, clock=clock, sleep=record
    )

    async def burst() -> list[Decision]:
        return [await limiter.acquire("c", "t", 10) for _ in range(7)]

    decisions = asyncio.run(burst())
    # tokens are reserved on arrival (the bucket goes into debt): each later request waits
    # one second more, and the one that would wait past max_wait is refused
    assert [d.allowed for d in decisions] == [True] * 6 + [False]
    assert sleeps == [pytest.approx(float(s)) for s in range(1, 6)]
    assert decisions[-1].retry_after == pytest.approx(6.0)


def test_queue_applies_only_when_every_refusing_limit_queues() -> None:
    clock = Clock()
    limiter = make(limit(10, 10), {"t": limit(10, 10, queue=True, max_wait="5s")}, clock)
    assert run(limiter, n=10).allowed
    refused = run(limiter, n=1)  # the client's limit refuses and does not queue
    assert not refused.allowed and clock.slept == []


def test_a_cancelled_waiter_gives_its_tokens_back() -> None:
    clock = Clock()

    async def never(seconds: float) -> None:
        raise asyncio.CancelledError

    limiter = Limiter(
        None, {"t": limit(10, 10, queue=True, max_wait="5s")}, clock=clock, sleep=never
    )
    assert run(limiter, n=10).allowed
    with pytest.raises(asyncio.CancelledError):
        run(limiter, n=10)
    clock.now += 1.0
    assert run(limiter, n=10).allowed  # without the refund this would be 1 s short


def test_processes_split_rate_and_burst() -> None:
    assert share(limit(200, 400), 2) == (100.0, 200.0)
    assert share(limit(3, 1), 4) == (0.75, 1.0)  # burst at least 1
    with pytest.raises(ValueError, match="processes must be >= 1"):
        share(limit(1), 0)
    clock = Clock()
    limiter = make(None, {"t": limit(200, 400)}, clock, processes=2)
    assert run(limiter, n=200).allowed
    decision = run(limiter, n=1)
    assert not decision.allowed and decision.headers["RateLimit-Limit"] == "200"
    assert decision.retry_after == pytest.approx(1 / 100)


def test_accepted_equals_burst_plus_rate_times_elapsed() -> None:
    """400 clients hammering a topic limited to 200/s with burst 400 for 5 s."""
    clock = Clock()
    limiter = make(limit(1000), {"t": limit(200, 400)}, clock)

    async def hammer() -> int:
        accepted = 0
        while clock.now < 5.0:
            for i in range(400):
                accepted += (await limiter.acquire(f"client-{i}", "t", 1)).allowed
            clock.now += 0.01
        return accepted

    accepted = asyncio.run(hammer())
    assert accepted == pytest.approx(400 + 200 * 5.0, abs=3)


def test_full_client_buckets_are_dropped() -> None:
    clock = Clock()
    limiter = make(limit(10, 10), {}, clock)
    for i in range(1000):
        run(limiter, client=f"c{i}")
    # one token back per 0.1 s: all full again after 0.1 s; adding a client sweeps them
    clock.now += 0.1
    run(limiter, client="new")
    assert limiter.client_count == 1


def test_client_buckets_are_capped_lru() -> None:
    clock = Clock()
    limiter = make(limit(1, 1, per="1h"), {}, clock, max_clients=100)
    for i in range(250):
        assert run(limiter, client=f"c{i}").allowed
    assert limiter.client_count == 100
    assert not run(limiter, client="c249").allowed  # recent: still limited
    assert run(limiter, client="c0").allowed  # evicted: starts from a full bucket again


def test_rate_limit_config_defaults_and_errors() -> None:
    default = limit(50)
    assert (default.burst, default.per, default.queue, default.max_wait) == (50, 1.0, False, 1.0)
    assert limit(0.5).burst == 1.0
    assert RateLimit.model_validate({"rate": 10, "per": "1m"}).per_second == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="greater than 0"):
        RateLimit.model_validate({"rate": 0})


def test_token_bucket_peek_refund_and_fullness() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 1.0, 20, clock=clock)
    assert bucket.is_full() and bucket.time_until(20) == 0
    assert math.isinf(bucket.time_until(21))
    assert bucket.try_take(15)
    assert bucket.available() == pytest.approx(5)
    assert bucket.time_until(10) == pytest.approx(0.5)
    assert bucket.seconds_to_full() == pytest.approx(1.5)
    bucket.refund(100)
    assert bucket.is_full() and bucket.available() == 20
    bucket.reserve(30)
    assert bucket.available() == pytest.approx(-10)
    assert bucket.time_until(1) == pytest.approx(1.1)
