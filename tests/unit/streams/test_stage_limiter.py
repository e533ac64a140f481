"""StageLimiter on a simulated clock: delay drains at capacity, shed, per key, worker share."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.config import RateLimit
from streams.operators.ratelimit import StageLimiter, overflow_topic, worker_share


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **spec: Any) -> StageLimiter:
    return StageLimiter(RateLimit.model_validate(spec), clock=clock)


def test_delay_burst_then_drains_at_capacity_with_zero_loss() -> None:
    clock = Clock()
    lim = limiter(clock, rate=200, per="1s", burst=400)
    sent = 0
    # 2,000 records offered in batches of 100: the agent sleeps what it is told
    for _ in range(20):
        d = lim.decide([{}] * 100)
        assert all(d.keep)
        clock.now += d.wait_s
        sent += 100
    # the first 400 are free (burst), the other 1,600 at 200/s = 8 s
    assert sent == 2_000
    assert clock.now == pytest.approx(8.0)


def test_shed_keeps_burst_and_marks_the_rest() -> None:
    clock = Clock()
    lim = limiter(clock, rate=10, burst=5, on_excess="shed")
    d = lim.decide([{}] * 8)
    assert d.keep == [True] * 5 + [False] * 3 and d.shed == 3 and d.wait_s == 0
    clock.now = 0.5  # 5 tokens back
    assert lim.decide([{}] * 6).shed == 1
    assert overflow_topic("orders.raw") == "orders.raw.overflow"


def test_per_key_buckets_are_independent() -> None:
    clock = Clock()
    lim = limiter(clock, rate=1, burst=2, key=["c"], on_excess="shed")
    d = lim.decide([{"c": "a"}, {"c": "a"}, {"c": "a"}, {"c": "b"}, {"c": "b"}])
    assert d.keep == [True, True, False, True, True]


def test_per_key_delay_waits_for_the_slowest_key() -> None:
    clock = Clock()
    lim = limiter(clock, rate=2, burst=1, key=["c"])
    d = lim.decide([{"c": "a"}] * 5 + [{"c": "b"}])
    assert all(d.keep) and d.wait_s == pytest.approx(2.0)  # a: 4 in debt at 2/s


def test_worker_share_math() -> None:
    assert worker_share(300, 2, 6) == 100
    assert worker_share(300, 0, 6) == 0
    with pytest.raises(ValueError, match="assigned=7, total=6"):
        worker_share(300, 7, 6)


def test_two_workers_sharing_partitions_keep_the_cluster_rate() -> None:
    clock = Clock()
    spec = {"rate": 600, "burst": 60}
    w1, w2 = limiter(clock, **spec), limiter(clock, **spec)
    w1.set_share(1, 3)
    w2.set_share(2, 3)
    assert (w1.rate_per_s, w2.rate_per_s) == pytest.approx((200, 400))
    # both run flat out for 10 simulated seconds, one record at a time
    done = [0, 0]
    free_at = [0.0, 0.0]
    step = 0.001
    while clock.now < 10.0:
        for i, w in enumerate((w1, w2)):
            while free_at[i] <= clock.now:
                free_at[i] = clock.now + w.decide([{}]).wait_s
                done[i] += 1
        clock.now += step
    total = sum(done)
    assert total == pytest.approx(600 * 10 + 60, rel=0.01)
    assert done[1] == pytest.approx(2 * done[0], rel=0.05)


def test_share_of_zero_partitions_admits_nothing_without_dividing_by_zero() -> None:
    clock = Clock()
    lim = limiter(clock, rate=100, on_excess="shed")
    lim.set_share(0, 4)
    lim.decide([{}])  # the single token of the minimum burst
    clock.now = 100.0
    assert lim.decide([{}] * 10).shed >= 9
