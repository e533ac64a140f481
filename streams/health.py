"""Worker health: ``/healthz``, ``/readyz`` and the stall watchdog.

- ``/readyz``: 200 when the worker holds partitions, is not rebalancing, and table recovery
  is done (the body lists the partitions held, ``topic[n]``); 503 (with the reason) otherwise.
- ``/healthz``: 200 while no assigned partition is stalled, no stage loop died and table
  recovery has not failed; 503 otherwise.
- Table recovery (restoring the tables from their changelogs after an assignment) fails
  silently in Faust: its changelog reader logs a warning and stops, leaving the worker in
  recovery for good (issues #651/#432), or the recovery service crashes. ``check`` calls a
  recovery *failed* when the service crashed or when it has been running for longer than
  ``recovery_timeout`` seconds; then the worker is not ready and not healthy
  (``headrace_healthy`` 0 for every stage), the reason is in both pages, and it is logged at
  ERROR once. A restart of the worker (an operator or supervisor decides) recovers again.
- The watchdog (``check``, run by a timer) calls a partition *stalled* when it has lag
  (high watermark beyond the last processed offset) and its position did not advance for
  ``stall_after`` seconds; it sets ``headrace_stalled_partitions``, ``headrace_healthy`` and
  ``headrace_consumer_lag`` per stage (Faust issues #175/#471/#629: consumers that stall
  silently).
- The stall watchdog (``headrace.watchdog``, started with the app, on its own thread) exits
  the worker (code 1, naming the partition) once the oldest stalled partition has not
  advanced for ``exit_after`` seconds, or once the event loop has not run for ``exit_after``
  seconds (a call that never returns blocks the loop itself; the watchdog asks the loop to
  answer every second, and after ``3 x interval`` without an answer the worker is unhealthy
  for that reason). It asks Faust to stop first (``app.crash``, without waiting for the
  batches in flight: the worker commits what was acked, leaves the group and exits 1, as
  after any crash) and ends the process with ``os._exit(1)`` when that has not happened
  ``grace`` seconds later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from headrace import metrics
from headrace.errors import WedgedError
from headrace.watchdog import Stall, Watchdog
from streams.runner import StageRunner

__all__ = ["Health"]

log = logging.getLogger(__name__)


@dataclass
class Health:
    """Health state of one worker; see the module doc."""

    app: faust.App
    runners: list[StageRunner]
    pipeline: str
    stall_after: float = 30.0
    stalled: dict[str, list[str]] = field(default_factory=dict)
    dead: list[str] = field(default_factory=list)
    assigned_at: dict[TP, float] = field(default_factory=dict)
    recovery_timeout: float = 600.0
    recovery_problem: str | None = None
    _recovery_since: float | None = None
    exit_after: float = 300.0
    grace: float = 10.0
    interval: float = 5.0
    #: the oldest lagging partition that did not advance (set by ``check``), for the watchdog
    stall_now: Stall | None = None
    #: when the event loop last ran (``check`` or ``_pong``; monotonic), and the watchdog's
    #: reason while it reports one
    beat: float | None = None
    watchdog_problem: str | None = None
    watchdog: Watchdog | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    #: per stage loop: (batches finished, since when that count), and since when it is busy
    _finished: dict[str, tuple[int, float]] = field(default_factory=dict)
    _busy_since: dict[str, float] = field(default_factory=dict)

    def check_recovery(self, now: float | None = None) -> str | None:
        """Whether table recovery failed (see the module doc); the reason, or None."""
        now = time.monotonic() if now is None else now
        recovery = getattr(self.app.tables, "recovery", None)
        problem = None
        if recovery is None:
            self._recovery_since = None
        elif getattr(recovery, "crashed", False):
            problem = f"table recovery crashed: {getattr(recovery, 'crash_reason', None)!r}"
        elif getattr(recovery, "in_recovery", False):
            if self._recovery_since is None:
                self._recovery_since = now
            elapsed = now - self._recovery_since
            if elapsed > self.recovery_timeout:
                problem = (
                    f"table recovery has not finished after {elapsed:.0f} s (limit "
                    f"{self.recovery_timeout:.0f} s, --recovery-timeout): the changelog reader "
                    "may have stopped (see the log); restart the worker"
                )
        else:
            self._recovery_since = None
        if problem is not None and self.recovery_problem is None:
            log.error("worker of pipeline %r: %s", self.pipeline, problem)
        elif problem is None and self.recovery_problem is not None:
            log.warning("worker of pipeline %r: table recovery finished after all", self.pipeline)
        self.recovery_problem = problem
        return problem

    def check(self, now: float | None = None) -> None:
        """One watchdog round (see the module doc)."""
        now = time.monotonic() if now is None else now
        failed = self.check_recovery(now) is not None
        if failed:
            for runner in self.runners:
                metrics.HEALTHY.labels(self.pipeline, runner.labels[1], "stage").set(0)
        consumer = self.app.consumer
        try:
            assignment = set(consumer.assignment())
        except ConsumerNotStarted:  # starting up: nothing assigned, nothing stalled
            return
        for tp in list(self.assigned_at):
            if tp not in assignment:
                del self.assigned_at[tp]
        self.stalled = {}
        self.beat = now
        oldest: Stall | None = None
        for runner in self.runners:
            source = runner.processor.source
            labels = (self.pipeline, runner.labels[1], "stage")
            lag_total = 0
            stalled = []
            for tp in assignment:
                if tp.topic != source:
                    continue
                self.assigned_at.setdefault(tp, now)
                try:
                    highwater = int(consumer.highwater(tp))
                except Exception:  # not fetched yet after assignment: no figure this round
                    highwater = -1
                if highwater < 0:
                    continue
                position = runner.position.get(tp)
                if position is None:
                    continue  # nothing processed since assignment: committed offset unknown here
                lag = max(0, highwater - (position + 1))
                lag_total += lag
                since = runner.progress_at.get(tp, self.assigned_at[tp])
                if lag > 0 and now - since > self.stall_after:
                    stalled.append(f"{tp.topic}[{tp.partition}]")
                # lag 1 on an idle partition is what a trailing transaction marker (an
                # exactly_once source's commit) leaves: not a reason to exit; a partition
                # stuck on one record is seen as soon as a second one arrives
                if lag > 1 and (oldest is None or since < oldest.since):
                    where = f"{tp.topic}[{tp.partition}] has lag {lag:,} (stage {runner.labels[1]})"
                    oldest = Stall(since, where)
            metrics.CONSUMER_LAG.labels(*labels, source).set(lag_total)
            metrics.STALLED_PARTITIONS.labels(*labels).set(len(stalled))
            if stalled:
                self.stalled[runner.labels[1]] = sorted(stalled)
            healthy = not stalled and runner.labels[1] not in self.dead and not failed
            healthy = healthy and self.watchdog_problem is None
            metrics.HEALTHY.labels(*labels).set(1 if healthy else 0)
        for runner in self.runners:
            busy = self._loop_stall(runner, now)
            if busy is not None and (oldest is None or busy.since < oldest.since):
                oldest = busy
        if self._recovery_since is not None:
            # streams wait while tables recover: that has its own limit (recovery_timeout,
            # reported above), not the watchdog's
            oldest = None
            self._finished.clear()
            self._busy_since.clear()
        self.stall_now = oldest

    def _loop_stall(self, runner: StageRunner, now: float) -> Stall | None:
        """A stage loop with input waiting or a batch in flight that finished no batch since
        (a hang on the first batch after an assignment leaves no position to measure lag
        from). Progress is ``runner.batches`` growing; read with getattr and a default."""
        name = runner.labels[1]
        batches = int(getattr(runner, "batches", 0))
        seen = self._finished.get(name)
        if seen is None or seen[0] != batches:
            seen = self._finished[name] = (batches, now)
        buffer = getattr(getattr(runner, "topic", None), "buffer", None)
        if buffer is None:
            return None
        waiting = int(buffer.qsize())
        idle = getattr(buffer, "_idle", None)
        in_flight = idle is not None and not idle.is_set()
        if not waiting and not in_flight:
            self._busy_since.pop(name, None)
            return None
        since = max(seen[1], self._busy_since.setdefault(name, now))
        flight = "a batch in flight" if in_flight else "no batch in flight"
        return Stall(since, f"stage {name} has {waiting:,} records waiting and {flight}")

    def watch_stall(self, now: float | None = None) -> Stall | None:
        """For the watchdog's thread: the oldest stalled partition (``check``'s), or the
        event loop itself when it has not run for ``3 x interval`` seconds (each call asks
        the loop to answer, ``_pong``; a stopping app's timers stop, its loop does not)."""
        now = time.monotonic() if now is None else now
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:  # the loop answers when it runs: how long it has not is the blocked time
                loop.call_soon_threadsafe(self._pong)
            except RuntimeError:  # closed meanwhile
                pass
        stall, beat = self.stall_now, self.beat
        if beat is None or now - beat <= 3 * self.interval:
            return stall
        blocked = f"the event loop has not run for {now - beat:,.0f} s"
        if stall is None:
            return Stall(beat, blocked)
        return Stall(min(beat, stall.since), f"{stall.pending}; {blocked}")

    def _pong(self) -> None:
        """Run by the event loop at the watchdog thread's request: it is not blocked."""
        self.beat = time.monotonic()

    def _on_watchdog(self, reason: str | None) -> None:
        """The watchdog's verdict (its thread): unhealthy stages while it holds a reason."""
        self.watchdog_problem = reason
        if reason is not None:
            for runner in self.runners:
                metrics.HEALTHY.labels(self.pipeline, runner.labels[1], "stage").set(0)

    def _crash(self) -> None:
        """The watchdog's clean stop (its thread): ``app.crash`` on the event loop, after
        which Faust stops the worker and exits 1 (a blocked loop never runs it: the watchdog
        then ends the process itself)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        error = WedgedError(self.watchdog.fired if self.watchdog else "stalled")

        def crash() -> None:
            # the batches in flight are the stuck ones: the stop must not wait for them
            # (BatchApp.drain_timeout, 60 s) before it commits what was acked and leaves
            if hasattr(self.app, "drain_timeout"):
                self.app.drain_timeout = 0.0
            loop.create_task(self.app.crash(error))

        loop.call_soon_threadsafe(crash)

    def start_watchdog(self) -> None:
        """Start the stall watchdog (once; from the event loop, whose loop it remembers)."""
        if self.watchdog is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.watchdog = Watchdog(
            f"worker of {self.pipeline}",
            "no partition advanced",
            self.watch_stall,
            unhealthy_after=self.stall_after,
            exit_after=self.exit_after,
            grace=self.grace,
            on_health=self._on_watchdog,
            stop=self._crash,
        ).start()

    def healthz(self) -> tuple[int, dict[str, Any]]:
        if self.stalled or self.dead or self.recovery_problem or self.watchdog_problem:
            body: dict[str, Any] = {"status": "unhealthy", "stalled": self.stalled}
            body["dead"] = self.dead
            if self.recovery_problem:
                body["recovery"] = self.recovery_problem
            if self.watchdog_problem:
                body["reason"] = self.watchdog_problem
            return 503, body
        return 200, {"status": "ok"}

    def readyz(self) -> tuple[int, dict[str, Any]]:
        if self.recovery_problem:
            return 503, {"ready": False, "reason": self.recovery_problem}
        try:
            assignment = self.app.consumer.assignment()
        except ConsumerNotStarted:
            return 503, {"ready": False, "reason": "consumer not started yet"}
        if not assignment:
            return 503, {"ready": False, "reason": "no partitions assigned yet"}
        if self.app.rebalancing:
            return 503, {"ready": False, "reason": "rebalancing"}
        recovery = getattr(self.app.tables, "recovery", None)
        if recovery is not None and (
            not recovery.completed.is_set() or getattr(recovery, "in_recovery", False)
        ):
            return 503, {"ready": False, "reason": "table recovery in progress"}
        held = sorted(f"{tp.topic}[{tp.partition}]" for tp in assignment)
        return 200, {"ready": True, "partitions": len(assignment), "assigned": held}

    def install(self, interval: float | None = None) -> None:
        """Register the web pages, the check timer, and the task starting the stall
        watchdog's thread with the app."""
        interval = self.interval if interval is None else interval
        self.interval = interval

        @self.app.page("/healthz")
        async def healthz(web: Any, request: Any) -> Any:
            status, body = self.healthz()
            return web.json(body, status=status)

        @self.app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            status, body = self.readyz()
            return web.json(body, status=status)

        @self.app.task  # type: ignore[untyped-decorator]
        async def start_watchdog() -> None:
            # at app start, before any partition is assigned: a first batch that blocks the
            # event loop must find the watchdog running already
            self.beat = time.monotonic()
            self.start_watchdog()

        @self.app.timer(interval=interval)  # type: ignore[untyped-decorator]
        async def watchdog() -> None:
            self.check()
