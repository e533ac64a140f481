"""Token bucket math on a simulated clock."""

from __future__ import annotations

import pytest

from headrace.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_steady_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=200, per=1.0, burst=400, clock=clock)
    # A burst of 400 goes through at once, the 401st waits 1/200 s.
    assert [bucket.reserve() for _ in range(400)] == [0.0] * 400
    assert bucket.reserve() == pytest.approx(1 / 200)


def test_delay_drains_a_backlog_at_capacity_without_loss() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=200, per=1.0, burst=400, clock=clock)
    sent = 0
    for _ in range(2000):  # 2,000 records arrive at once
        wait = bucket.reserve()
        clock.now += wait  # backpressure: the caller sleeps, nothing is dropped
        sent += 1
    assert sent == 2000
    # 400 from the burst, then 1,600 at 200/s = 8 s.
    assert clock.now == pytest.approx(8.0)


def test_try_take_sheds_without_debt() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, per=1.0, burst=2, clock=clock)
    assert bucket.try_take() and bucket.try_take()
    assert not bucket.try_take()
    clock.now += 0.1  # one token back
    assert bucket.try_take()
    assert not bucket.try_take()


def test_per_period_and_rate_change() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=60, per=60.0, burst=1, clock=clock)  # one per second
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)
    bucket.set_rate(120, 60.0, 1)  # a worker's share doubled
    assert bucket.rate_per_s == pytest.approx(2.0)


def test_refill_is_capped_at_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=5, per=1.0, burst=5, clock=clock)
    clock.now += 100
    assert sum(bucket.try_take() for _ in range(10)) == 5


@pytest.mark.parametrize(("rate", "per"), [(0, 1), (-1, 1), (1, 0)])
def test_invalid_rates_are_rejected(rate: float, per: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        TokenBucket(rate=rate, per=per)
