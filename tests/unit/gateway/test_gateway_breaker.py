"""The circuit breaker's transitions on a simulated clock."""

from __future__ import annotations

import pytest

from gateway.breaker import Breaker, State, Ticket


def state_of(breaker: Breaker) -> State:
    """The breaker's state, read afresh (mypy would keep an earlier assert's narrowing)."""
    return breaker.state


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, failures: int = 3) -> tuple[Breaker, list[State]]:
    seen: list[State] = []
    return Breaker(failures=failures, open_for=2.0, clock=clock, on_change=seen.append), seen


def test_closed_lets_requests_through() -> None:
    breaker, seen = make(Clock())
    assert breaker.allow() is Ticket.GO
    assert state_of(breaker) is State.CLOSED and seen == []


def test_consecutive_failures_open_it_and_a_success_resets_the_count() -> None:
    clock = Clock()
    breaker, seen = make(clock)
    breaker.failure("x")
    breaker.failure("x")
    breaker.success()
    breaker.failure("x")
    breaker.failure("x")
    assert state_of(breaker) is State.CLOSED
    breaker.failure("timeout")
    assert state_of(breaker) is State.OPEN and seen == [State.OPEN]
    assert breaker.reason == "timeout"
    assert breaker.allow() is Ticket.REFUSE


def test_trip_opens_at_once_and_retry_after_counts_down() -> None:
    clock = Clock()
    breaker, _ = make(clock)
    breaker.trip("all brokers down")
    assert state_of(breaker) is State.OPEN
    assert breaker.retry_after() == 2
    clock.now += 1.5
    assert breaker.retry_after() == 1
    assert breaker.allow() is Ticket.REFUSE


def test_after_open_for_one_probe_goes_and_the_others_wait() -> None:
    clock = Clock()
    breaker, seen = make(clock)
    breaker.trip("down")
    clock.now += 2.0
    assert breaker.allow() is Ticket.PROBE
    assert state_of(breaker) is State.HALF_OPEN
    assert breaker.allow() is Ticket.REFUSE, "one probe at a time"
    breaker.success()
    assert state_of(breaker) is State.CLOSED
    assert breaker.allow() is Ticket.GO
    assert seen == [State.OPEN, State.HALF_OPEN, State.CLOSED]


def test_a_failed_probe_opens_it_again() -> None:
    clock = Clock()
    breaker, _ = make(clock)
    breaker.trip("down")
    clock.now += 2.0
    assert breaker.allow() is Ticket.PROBE
    breaker.failure("no broker answered")
    assert state_of(breaker) is State.OPEN
    assert breaker.allow() is Ticket.REFUSE
    clock.now += 2.0
    assert breaker.allow() is Ticket.PROBE


def test_a_probe_that_never_reports_is_replaced_after_open_for() -> None:
    clock = Clock()
    breaker, _ = make(clock)
    breaker.trip("down")
    clock.now += 2.0
    assert breaker.allow() is Ticket.PROBE
    clock.now += 2.0
    assert breaker.allow() is Ticket.PROBE


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Breaker(failures=0)
    with pytest.raises(ValueError):
        Breaker(open_for=0)
