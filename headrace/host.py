"""The process host: what ``headrace produce``, ``worker`` and ``sink`` do around their work.

``host(...)`` serves ``/metrics`` for the process (``headrace.metrics.serve``: a free port
when the one asked for is 0 or busy), turns SIGTERM and SIGINT into the work's ``stop`` (it
finishes the batch in hand, commits or checkpoints, then returns), tunes the garbage
collector for batch work (``headrace.gc_tuning``), runs the work, and always calls
``close``. Loading the pipeline and building the work are the caller's (they differ per kind).

A worker passes ``stop=None``: Faust installs its own signal handlers.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from headrace import metrics
from headrace.gc_tuning import tune_gc

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
) -> T:
    """Run ``run`` as process ``kind`` ``name`` of ``pipeline`` (see the module doc); returns
    what ``run`` returns. ``metrics_port``: default the file's ``metrics.port``."""
    port = pipeline.metrics.port if metrics_port is None else metrics_port
    actual = metrics.serve(pipeline.name, kind, name, port, pipeline.metrics.final_scrape)
    log.info("%s %r: metrics on http://127.0.0.1:%d/metrics", kind, name, actual)
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
        return run()
    finally:
        close()
