"""The stall watchdog (headrace.watchdog) on a fake clock and a fake progress source."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import NoReturn, cast

import pytest

from headrace.errors import WedgedError
from headrace.watchdog import ProgressClock, Stall, Watchdog, deadline_call


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Exited(Exception):
    pass


def _exit(code: int) -> NoReturn:
    raise _Exited(code)


class _Subject:
    """A loop with a batch in hand or not; progress by ``clock.progress()``."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = ProgressClock(clock)
        self.pending: str | None = None

    def stall(self) -> Stall | None:
        return self.clock.stall(self.pending)


def _watchdog(
    clock: _Clock, subject: _Subject, err: io.StringIO, health: list[str | None]
) -> Watchdog:
    return Watchdog(
        "sink revenue_mongo",
        "no batch committed",
        subject.stall,
        unhealthy_after=60,
        exit_after=300,
        grace=0.01,
        on_health=health.append,
        clock=clock,
        exit=_exit,
        err=err,
    )


def test_unhealthy_after_the_timeout_then_exits_naming_what_was_stuck() -> None:
    clock, err = _Clock(), io.StringIO()
    health: list[str | None] = []
    subject = _Subject(clock)
    dog = _watchdog(clock, subject, err, health)
    subject.pending = "1,234 records are pending on orders[2]"
    assert dog.check() is None  # work just became pending
    clock.now += 59
    assert dog.check() is None and health == []
    clock.now += 1
    reason = dog.check()
    assert reason == (
        "sink revenue_mongo: no batch committed for 60 s while 1,234 records are pending "
        "on orders[2]"
    )
    assert health == [reason]
    clock.now += 240
    with pytest.raises(_Exited) as exited:
        dog.check()
    assert exited.value.args == (1,)
    lines = err.getvalue().splitlines()
    assert lines[0] == (
        "headrace: sink revenue_mongo: no batch committed for 300 s while 1,234 records are "
        "pending on orders[2]; exiting so the supervisor restarts it"
    )
    assert "forced" in lines[-1]
    assert dog.fired is not None and dog.fired.startswith("sink revenue_mongo: no batch")


def test_a_clean_stop_is_asked_for_first() -> None:
    clock, err = _Clock(), io.StringIO()
    subject = _Subject(clock)
    stops: list[bool] = []
    dog = Watchdog(
        "source orders_db",
        "no batch produced or acknowledged",
        subject.stall,
        unhealthy_after=1,
        exit_after=2,
        grace=0.01,
        stop=lambda: stops.append(True),
        clock=clock,
        exit=_exit,
        err=err,
    )
    subject.pending = "a pass over the source is running"
    dog.check()
    clock.now += 2
    with pytest.raises(_Exited):
        dog.check()
    assert stops == [True]


def test_healthy_again_when_progress_resumes() -> None:
    clock, err = _Clock(), io.StringIO()
    health: list[str | None] = []
    subject = _Subject(clock)
    dog = _watchdog(clock, subject, err, health)
    subject.pending = "10 records are pending on t[0]"
    dog.check()
    clock.now += 100
    assert dog.check() is not None
    subject.clock.progress()  # a batch committed; another one in hand right away
    assert dog.check() is None
    assert health[-1] is None and len(health) == 2
    clock.now += 200  # 200 s since the progress: unhealthy, not yet exited
    assert dog.check() is not None and dog.fired is None


def test_never_fires_while_idle() -> None:
    clock, err = _Clock(), io.StringIO()
    health: list[str | None] = []
    subject = _Subject(clock)
    dog = _watchdog(clock, subject, err, health)
    for _ in range(100):
        clock.now += 60  # hours without progress, but nothing to do
        assert dog.check() is None
    assert health == [] and dog.fired is None and err.getvalue() == ""
    # work arriving after a long idle time counts from its arrival, not from the last progress
    subject.pending = "1 records are pending on t[0]"
    assert dog.check() is None
    clock.now += 59
    assert dog.check() is None


def test_exit_after_zero_only_reports() -> None:
    clock, err = _Clock(), io.StringIO()
    health: list[str | None] = []
    subject = _Subject(clock)
    dog = _watchdog(clock, subject, err, health)
    dog.exit_after = 0
    subject.pending = "work"
    dog.check()
    clock.now += 10_000
    assert dog.check() is not None and dog.fired is None


def test_a_failing_progress_source_is_no_verdict() -> None:
    def broken() -> Stall | None:
        raise RuntimeError("boom")

    dog = Watchdog("sink s", "no batch committed", broken, exit=_exit, err=io.StringIO())
    assert dog.check() is None


def test_the_thread_fires_while_the_main_thread_is_blocked() -> None:
    """The case to catch: the loop is inside a call that never returns; the watchdog's own
    thread still ends the process (here: records the exit)."""
    exited = threading.Event()
    codes: list[int] = []

    def record_exit(code: int) -> None:  # returns: the watchdog thread goes on, fired once
        codes.append(code)
        exited.set()

    clock = ProgressClock()
    err = io.StringIO()
    dog = Watchdog(
        "sink s",
        "no batch committed",
        lambda: clock.stall("5 records are pending on t[0]"),
        unhealthy_after=0.05,
        exit_after=0.1,
        grace=0.05,
        interval=0.02,
        exit=cast(Callable[[int], NoReturn], record_exit),
        err=err,
    ).start()
    blocked = threading.Event()
    assert not blocked.wait(0.01)  # the "main loop" is stuck; nothing calls progress()
    assert exited.wait(5), "the watchdog thread did not fire"
    dog.close()
    assert codes == [1]
    assert "exiting so the supervisor restarts it" in err.getvalue()


def test_deadline_call_returns_raises_or_gives_up() -> None:
    assert deadline_call(lambda: 42, 1.0, name="t", wedged="stuck") == 42
    with pytest.raises(ValueError, match="bad"):
        deadline_call(lambda: (_ for _ in ()).throw(ValueError("bad")), 1.0, name="t", wedged="x")
    started = time.monotonic()
    with pytest.raises(WedgedError, match="commit did not return"):
        deadline_call(
            lambda: threading.Event().wait(10), 0.05, name="t", wedged="commit did not return"
        )
    assert time.monotonic() - started < 2
