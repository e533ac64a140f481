"""The circuit breaker in front of the Kafka producer: fail fast while the broker is away.

States (the ``headrace_gateway_breaker_state`` gauge): ``CLOSED`` (0) lets requests through;
``OPEN`` (2) refuses them at once (503, ``Retry-After``: the seconds left of ``open_for``);
``HALF_OPEN`` (1) lets exactly one request probe the broker, the others are still refused.

Transitions:

- closed -> open: ``trip()`` (all brokers down, the producer's queue full: at once), or
  ``failures`` consecutive ``failure()`` calls (a delivery error or timeout);
- open -> half-open: ``open_for`` seconds after it opened, on the next ``allow()``, which
  returns ``PROBE``: that caller checks the broker (a metadata request) and reports
  ``success()`` or ``failure()``;
- half-open -> closed on ``success()``; half-open -> open on ``failure()`` or ``trip()``;
- any ``success()`` (a delivery acknowledged) closes it and resets the count.

A probe that never reports back (its caller crashed) is taken as failed after ``open_for``,
so the breaker cannot stay half-open for ever. Thread-safe: the producer's delivery
callbacks report from the poll thread, requests ask from the event loop.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable

__all__ = ["Breaker", "State", "Ticket"]


class State(enum.IntEnum):
    """Breaker states; the values are those of the state gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Ticket(enum.Enum):
    """What ``allow()`` answers: go, probe the broker first, or refuse."""

    GO = "go"
    PROBE = "probe"
    REFUSE = "refuse"


class Breaker:
    """See the module docstring. ``on_change(state)`` is called after every transition
    (outside the lock), e.g. to set the state gauge."""

    def __init__(
        self,
        *,
        failures: int = 3,
        open_for: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State], None] | None = None,
    ) -> None:
        if failures < 1 or open_for <= 0:
            raise ValueError(f"failures must be >= 1 and open_for > 0 (got {failures}, {open_for})")
        self.failures = failures
        self.open_for = open_for
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._count = 0
        self._opened_at = 0.0
        self._probe_at = 0.0
        self.reason = ""

    @property
    def state(self) -> State:
        """The current state (an open breaker past ``open_for`` still reads OPEN until asked)."""
        return self._state

    def allow(self) -> Ticket:
        """May a request go to the broker now? See the module docstring."""
        with self._lock:
            now = self._clock()
            if self._state is State.CLOSED:
                return Ticket.GO
            if self._state is State.HALF_OPEN and now - self._probe_at < self.open_for:
                return Ticket.REFUSE  # a probe is out
            if now - self._opened_at < self.open_for and self._state is State.OPEN:
                return Ticket.REFUSE
            self._state = State.HALF_OPEN
            self._probe_at = now
        self._changed(State.HALF_OPEN)
        return Ticket.PROBE

    def retry_after(self) -> int:
        """Whole seconds a refused client should wait (at least 1)."""
        with self._lock:
            left = self.open_for - (self._clock() - self._opened_at)
        return max(1, math.ceil(left))

    def success(self) -> None:
        """The broker acknowledged something: close."""
        with self._lock:
            self._count = 0
            if self._state is State.CLOSED:
                return
            self._state = State.CLOSED
            self.reason = ""
        self._changed(State.CLOSED)

    def failure(self, reason: str) -> None:
        """A produce failed (delivery error, timeout, failed probe): count it; open at the
        ``failures``-th in a row, or at once when half-open."""
        with self._lock:
            self._count += 1
            if self._state is State.CLOSED and self._count < self.failures:
                return
            self._open(reason)
        self._changed(State.OPEN)

    def trip(self, reason: str) -> None:
        """Open at once (all brokers down, the producer's queue full)."""
        with self._lock:
            self._open(reason)
        self._changed(State.OPEN)

    def _open(self, reason: str) -> None:
        self._state = State.OPEN
        self._opened_at = self._clock()
        self.reason = reason

    def _changed(self, state: State) -> None:
        if self._on_change is not None:
            self._on_change(state)
