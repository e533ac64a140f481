"""The process host: what ``headrace produce``, ``worker`` and ``sink`` do around their work.

``host(...)`` serves ``/metrics`` for the process (``headrace.metrics.serve``: a free port
when the one asked for is 0 or busy), turns SIGTERM and SIGINT into the work's ``stop`` (it
finishes the batch in hand, commits or checkpoints, then returns), tunes the garbage
collector for batch work (``headrace.gc_tuning``), runs the work, and always calls
``close``. Loading the pipeline and building the work are the caller's (they differ per kind).

A worker passes ``stop=None``: Faust installs its own signal handlers.

Around every kind of work it also installs the process's fault tracker
(``headrace.faults``: its ``process`` label is ``kind/name``), exports the restarts and last
exit cause its supervisor passed (``HEADRACE_RESTARTS``, ``HEADRACE_LAST_EXIT``:
``headrace_process_restarts``, ``headrace_last_exit``), and, given ``stall``, runs the stall
watchdog (``headrace.watchdog``, timeouts from the file's ``watchdog:``): when it fires it
calls ``wedged_stop`` (default ``stop``) and ``host`` raises ``WedgedError`` once ``run``
returns (exit code 1).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from headrace import faults, metrics
from headrace.errors import WedgedError
from headrace.gc_tuning import tune_gc
from headrace.metrics_server import set_unhealthy
from headrace.watchdog import Stall, Watchdog

if TYPE_CHECKING:
    from headrace.config import Pipeline

__all__ = ["host"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def host(
    pipeline: Pipeline,
    *,
    kind: str,
    name: str,
    run: Callable[[], T],
    stop: Callable[[], None] | None,
    close: Callable[[], None] = lambda: None,
    metrics_port: int | None = None,
    stall: Callable[[], Stall | None] | None = None,
    stuck: str = "no progress",
    on_health: Callable[[str | None], None] | None = None,
    wedged_stop: Callable[[], None] | None = None,
) -> T:
    """Run ``run`` as process ``kind`` ``name`` of ``pipeline`` (see the module doc); returns
    what ``run`` returns. ``metrics_port``: default the file's ``metrics.port``. ``stall``,
    ``stuck``, ``on_health``: the watchdog's (``headrace.watchdog.Watchdog``); by default
    the health goes to ``headrace_healthy`` and the metrics server's ``/healthz``."""
    port = pipeline.metrics.port if metrics_port is None else metrics_port
    actual = metrics.serve(pipeline.name, kind, name, port, pipeline.metrics.final_scrape)
    log.info("%s %r: metrics on http://127.0.0.1:%d/metrics", kind, name, actual)
    tracker = faults.install(
        faults.FaultTracker(pipeline.name, f"{kind}/{name}", probe=_broker_probe(pipeline))
    ).start()
    supervised(pipeline.name, f"{kind}/{name}")
    watchdog = None
    if stall is not None:
        settings = pipeline.watchdog
        if on_health is None:
            on_health = partial(_report_health, metrics.HEALTHY.labels(pipeline.name, name, kind))
            on_health(None)
        watchdog = Watchdog(
            f"{_KIND_WORD.get(kind, kind)} {name}",
            stuck,
            stall,
            unhealthy_after=settings.unhealthy_after,
            exit_after=settings.exit_after,
            grace=settings.grace,
            on_health=on_health,
            stop=wedged_stop or stop,
        ).start()
    if stop is not None:
        halt = stop

        def _stop(signum: int, _frame: FrameType | None) -> None:
            log.info(
                "%s %r: %s received; finishing the batch in hand, then leaving",
                kind,
                name,
                signal.Signals(signum).name,
            )
            halt()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    tune_gc()  # a batch of records is tens of thousands of young objects (see tune_gc)
    try:
        result = run()
    finally:
        if watchdog is not None:
            watchdog.close()
        tracker.close()
        close()
    if watchdog is not None and watchdog.fired is not None:
        raise WedgedError(watchdog.fired)
    return result


#: the word a watchdog's message uses for a process kind
_KIND_WORD = {"stage": "worker"}


def _report_health(gauge: Any, reason: str | None) -> None:
    gauge.set(1 if reason is None else 0)
    set_unhealthy(reason)


def supervised(pipeline: str, process: str) -> None:
    """Export what the supervisor passed: ``HEADRACE_RESTARTS`` (a count) as
    ``headrace_process_restarts`` and ``HEADRACE_LAST_EXIT`` as ``headrace_last_exit``."""
    text = os.environ.get("HEADRACE_RESTARTS", "0")
    restarts = int(text) if text.isdigit() else 0
    metrics.PROCESS_RESTARTS.labels(pipeline, process).set(restarts)
    last = os.environ.get("HEADRACE_LAST_EXIT")
    if last:
        metrics.LAST_EXIT.labels(pipeline, process).info({"reason": last[:300]})


def _broker_probe(pipeline: Pipeline) -> Callable[[], bool]:
    """A metadata request on a client of its own (not the one that may be stuck), 5 s."""
    holder: list[object] = []

    def probe() -> bool:
        from confluent_kafka.admin import AdminClient

        from headrace.kafka_clients import client_config

        if not holder:
            holder.append(AdminClient(client_config(pipeline.kafka)))
        admin = holder[0]
        assert isinstance(admin, AdminClient)
        admin.list_topics(timeout=5)
        return True

    return probe
