"""The stall watchdog: no process wedges while it reports healthy.

A process tells its ``Watchdog`` what is stuck, through ``stall``: a callable returning a
``Stall`` (since when work has been pending without progress, and what that work is) or
None (idle, or progressing). ``ProgressClock`` turns "progress happened" / "work is pending"
into that answer for loops that have one notion of progress (a sink's commit, a source's
batch); the worker computes its own (the oldest lagging partition that did not advance).

On its own daemon thread (never the event loop or the main thread, which may be the thing
blocked), every ``interval`` seconds, the watchdog asks ``stall()``:

- stalled for ``unhealthy_after`` seconds or more: the process is unhealthy; ``on_health``
  gets the reason (the caller sets ``headrace_healthy`` 0 and shows it in /healthz), logged
  at ERROR once; progress makes it healthy again (``on_health(None)``, logged);
- stalled for ``exit_after`` seconds or more (0: never): the watchdog writes one line naming
  what was stuck to stderr (``headrace: sink revenue_mongo: no batch committed for 300 s
  while 1,234 records are pending on orders[2]; exiting so the supervisor restarts it``;
  ``headrace run`` passes the last line a process wrote to its next start as
  ``HEADRACE_LAST_EXIT``), calls ``stop`` (a clean stop; ``host`` then exits 1 because the
  watchdog ``fired``), and when the process is still alive ``grace`` seconds later ends it
  with ``os._exit(1)``: a call that never returns cannot be waited for.

``deadline_call`` is the same rule for one call: run it on a helper thread and raise
``WedgedError`` when it has not returned in time (the sink's offset commit uses it).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TextIO, TypeVar

from headrace.errors import EXIT_FAILURE, WedgedError

__all__ = ["ProgressClock", "Stall", "Watchdog", "deadline_call"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Stall:
    """Work pending without progress: ``since`` (monotonic seconds) and what it is
    (``pending``, e.g. ``"1,234 records are pending on orders[2]"``)."""

    since: float
    pending: str


class ProgressClock:
    """Progress and pending work of one loop, for ``Watchdog``. Thread-safe.

    ``progress()`` is called by the loop when it made progress (its own word for it is
    ``stuck``, e.g. ``"no batch committed"``). ``stall(pending, now)`` is called by the
    watchdog with the work pending now (None: idle): the stall runs from the later of the
    last progress and the moment work became pending, so time spent idle never counts.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self._pending_since: float | None = None
        self._lock = threading.Lock()

    def progress(self) -> None:
        with self._lock:
            self._last = self._clock()

    @property
    def last_progress(self) -> float:
        return self._last

    def stall(self, pending: str | None, now: float | None = None) -> Stall | None:
        now = self._clock() if now is None else now
        with self._lock:
            if pending is None:
                self._pending_since = None
                return None
            if self._pending_since is None:
                self._pending_since = now
            return Stall(max(self._last, self._pending_since), pending)


class Watchdog:
    """Watches one process (see the module doc). ``what`` names it (``"sink revenue_mongo"``),
    ``stuck`` says what did not happen (``"no batch committed"``)."""

    def __init__(
        self,
        what: str,
        stuck: str,
        stall: Callable[[], Stall | None],
        *,
        unhealthy_after: float = 60.0,
        exit_after: float = 300.0,
        grace: float = 10.0,
        interval: float = 1.0,
        on_health: Callable[[str | None], None] = lambda _reason: None,
        stop: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        exit: Callable[[int], NoReturn] = os._exit,
        err: TextIO | None = None,
    ) -> None:
        self.what = what
        self.stuck = stuck
        self._stall = stall
        self.unhealthy_after = unhealthy_after
        self.exit_after = exit_after
        self.grace = grace
        self.interval = interval
        self._on_health = on_health
        self._stop = stop
        self._clock = clock
        self._exit = exit
        self._err = err
        #: the reason the process is unhealthy now (None: healthy)
        self.reason: str | None = None
        #: the exit line, once the watchdog decided to end the process
        self.fired: str | None = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def describe(self, stall: Stall, now: float) -> str:
        """``"<what>: <stuck> for N s while <pending>"``."""
        return f"{self.what}: {self.stuck} for {now - stall.since:,.0f} s while {stall.pending}"

    def check(self, now: float | None = None) -> str | None:
        """One round: update health, fire when due; return the unhealthy reason (or None).

        A ``stall`` callable that raises counts as no answer this round (logged)."""
        now = self._clock() if now is None else now
        try:
            stall = self._stall()
        except Exception:
            log.exception("%s: the watchdog could not read its progress", self.what)
            return self.reason
        stalled_for = 0.0 if stall is None else now - stall.since
        reason = None
        if stall is not None and stalled_for >= self.unhealthy_after:
            reason = self.describe(stall, now)
        if reason is not None and self.reason is None:
            log.error("%s; unhealthy", reason)
        elif reason is None and self.reason is not None:
            log.warning("%s: progressing again; healthy", self.what)
        if reason != self.reason:
            self.reason = reason
            self._on_health(reason)
        if (
            stall is not None
            and self.exit_after > 0
            and stalled_for >= self.exit_after
            and self.fired is None
        ):
            self._fire(f"{self.describe(stall, now)}; exiting so the supervisor restarts it")
        return reason

    def _fire(self, line: str) -> None:
        """Say why, ask for a clean stop, and end the process if it has not stopped after
        ``grace`` seconds (runs on the watchdog's thread)."""
        self.fired = line
        log.error("%s", line)
        self._say(line)
        if self._stop is not None:
            try:
                self._stop()
            except Exception:
                log.exception("%s: the clean stop failed", self.what)
        # not _closed: the host closes the watchdog when its work returns, and the exit after
        # that (atexit hooks, the final scrape) may hang too; a finished process ends this
        # daemon thread before the grace is over
        threading.Event().wait(self.grace)
        self._say(f"{line} (forced: a clean stop did not finish in {self.grace:g} s)")
        self._exit(EXIT_FAILURE)

    def _say(self, line: str) -> None:
        err = self._err or sys.stderr
        try:
            err.write(f"headrace: {line}\n")
            err.flush()
        except (OSError, ValueError):  # a closed stream must not keep the exit from happening
            pass

    # -- thread -----------------------------------------------------------------------------

    def start(self) -> Watchdog:
        """Start the watchdog's daemon thread; returns self."""
        self._thread = threading.Thread(target=self._loop, name="headrace-watchdog", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._closed.wait(self.interval):
            self.check()

    def close(self) -> None:
        """Stop watching (the process is ending). An exit already decided still happens if
        the process has not ended ``grace`` seconds after it was decided (see ``_fire``)."""
        self._closed.set()


def deadline_call(fn: Callable[[], T], timeout: float, *, name: str, wedged: str) -> T:
    """``fn()`` on a helper thread, waited for at most ``timeout`` seconds.

    Returns what ``fn`` returns and re-raises what it raises; past the deadline raises
    ``WedgedError(wedged)`` and leaves the thread behind (a daemon: it cannot be stopped;
    the caller is expected to exit, with ``os._exit`` when the call holds a lock the
    interpreter's shutdown would wait for)."""
    outcome: list[tuple[bool, object]] = []
    done = threading.Event()

    def call() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=call, name=name, daemon=True).start()
    if not done.wait(timeout):
        raise WedgedError(wedged)
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]
