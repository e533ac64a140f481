"""Faults a process survives without a restart, and how long it took to recover from them.

A fault is one of ``FAULTS`` (a fixed set; labels stay bounded):

- ``broker_unreachable``: the Kafka client reported that it cannot reach the brokers
  (``_ALL_BROKERS_DOWN``, ``_TRANSPORT``, ``_MSG_TIMED_OUT``, ``_TIMED_OUT`` in a
  confluent-kafka ``error_cb``); it ends at the next successful metadata request. A
  ``_TRANSPORT`` error alone (a broker closing an idle connection says that too) counts
  only once a probe confirms the brokers are unreachable;
- ``database_unavailable``: a source's or sink's database or endpoint (MySQL, S3, MongoDB,
  DynamoDB) failed with a retriable error; it ends when the retried call succeeds;
- ``throttled``: the sink's database throttled its writes (a retriable error that says so);
  it ends when the retried write succeeds.

``FaultTracker`` records, per process (label ``process`` = ``kind/name``, as the Prometheus
target's ``headrace_process``): ``headrace_fault_recoveries_total``,
``headrace_fault_recovery_seconds`` (histogram), ``headrace_last_fault_timestamp_seconds``
(when the last fault of that kind that was recovered from began, Unix seconds),
``headrace_last_fault_recovery_seconds`` (how long its recovery took) and
``headrace_broker_reachable`` (1/0).

One tracker per process (``install``; ``current()`` elsewhere, a tracker that records
nothing before ``install``). Thread-safe: librdkafka calls ``error_cb`` from whichever
thread polls the client. ``start`` runs the broker probe on a daemon thread while a broker
fault is open or suspected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from headrace import metrics

__all__ = ["FAULTS", "Fault", "FaultTracker", "current", "install", "kafka_error_cb"]

log = logging.getLogger(__name__)

Fault = Literal["broker_unreachable", "database_unavailable", "throttled"]
FAULTS: tuple[Fault, ...] = ("broker_unreachable", "database_unavailable", "throttled")

#: librdkafka error names meaning "the brokers cannot be reached" (KafkaError.name())
BROKER_DOWN = frozenset({"_ALL_BROKERS_DOWN", "_MSG_TIMED_OUT", "_TIMED_OUT"})
#: ... and one that may also be a broker closing an idle connection: confirmed by a probe
BROKER_MAYBE = frozenset({"_TRANSPORT"})


class FaultTracker:
    """Open faults of one process and their metrics (see the module doc)."""

    def __init__(
        self,
        pipeline: str,
        process: str,
        *,
        probe: Callable[[], bool] | None = None,
        probe_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.pipeline = pipeline
        self.process = process
        self._probe = probe
        self.probe_every = probe_every
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        #: fault -> (monotonic start, wall start) of the faults open now
        self.open: dict[str, tuple[float, float]] = {}
        self._suspected: tuple[float, float] | None = None
        self._closed = threading.Event()
        self._reachable = metrics.BROKER_REACHABLE.labels(pipeline, process)
        self._reachable.set(1)

    # -- recording --------------------------------------------------------------------------

    def begin(self, fault: Fault, since: tuple[float, float] | None = None) -> None:
        """Fault ``fault`` started (now, or at ``since``); a fault already open stays as is."""
        with self._lock:
            if fault in self.open:
                return
            self.open[fault] = since or (self._clock(), self._wall())
        if fault == "broker_unreachable":
            self._reachable.set(0)
        log.warning("%s: fault %s began", self.process, fault)

    def end(self, fault: Fault) -> float | None:
        """Fault ``fault`` is over: record its recovery; return how long it took (None when
        it was not open). Cheap when nothing is open: call it after every successful call."""
        if fault not in self.open:
            if fault == "broker_unreachable":
                self._suspected = None
            return None
        with self._lock:
            started = self.open.pop(fault, None)
            if fault == "broker_unreachable":
                self._suspected = None
        if started is None:
            return None
        took = max(0.0, self._clock() - started[0])
        labels = (self.pipeline, self.process, fault)
        metrics.FAULT_RECOVERIES.labels(*labels).inc()
        metrics.FAULT_RECOVERY_SECONDS.labels(*labels).observe(took)
        metrics.LAST_FAULT_TIMESTAMP.labels(*labels).set(started[1])
        metrics.LAST_FAULT_RECOVERY.labels(*labels).set(took)
        if fault == "broker_unreachable":
            self._reachable.set(1)
        log.warning("%s: recovered from %s after %.1f s", self.process, fault, took)
        return took

    def kafka_error(self, err: Any) -> None:
        """A confluent-kafka ``error_cb`` (``err``: a ``KafkaError``)."""
        name = _error_name(err)
        if name in BROKER_DOWN:
            with self._lock:
                since = self._suspected
            self.begin("broker_unreachable", since)
        elif name in BROKER_MAYBE and "broker_unreachable" not in self.open:
            with self._lock:
                if self._suspected is None:
                    self._suspected = (self._clock(), self._wall())

    # -- the broker probe -------------------------------------------------------------------

    def probe_once(self) -> None:
        """Ask the brokers once (when a broker fault is open or suspected): reachable ends
        the fault (or the suspicion), unreachable confirms a suspected one."""
        if self._probe is None or ("broker_unreachable" not in self.open and not self._suspected):
            return
        try:
            ok = self._probe()
        except Exception:
            ok = False
        if ok:
            self.end("broker_unreachable")
            return
        with self._lock:
            since = self._suspected
        self.begin("broker_unreachable", since)

    def start(self) -> FaultTracker:
        """Run ``probe_once`` every ``probe_every`` seconds on a daemon thread."""
        if self._probe is not None:
            threading.Thread(target=self._loop, name="headrace-faults", daemon=True).start()
        return self

    def _loop(self) -> None:
        while not self._closed.wait(self.probe_every):
            self.probe_once()

    def close(self) -> None:
        self._closed.set()


def _error_name(err: Any) -> str:
    try:
        return str(err.name())
    except Exception:
        return ""


_current: FaultTracker | None = None
_fallback = threading.local()


def install(tracker: FaultTracker) -> FaultTracker:
    """Make ``tracker`` the process's tracker (``current()``); returns it."""
    global _current
    _current = tracker
    return tracker


def current() -> FaultTracker:
    """The process's tracker; before ``install`` (tests, scripts), one that records under
    process ``"-/-"``."""
    if _current is not None:
        return _current
    tracker: FaultTracker | None = getattr(_fallback, "tracker", None)
    if tracker is None:
        tracker = FaultTracker("-", "-/-")
        _fallback.tracker = tracker
    return tracker


def kafka_error_cb(err: Any) -> None:
    """``error_cb`` for confluent-kafka clients: hands the error to ``current()``."""
    current().kafka_error(err)
