"""The /metrics HTTP endpoint of a process, and the final scrape it waits for before exiting.

A process's last counts (the records of its last batch, its dead letters) are only seen by
Prometheus if Prometheus scrapes the process once more after they were counted. A source run
with ``--once`` or a sink stopped by SIGTERM would otherwise exit between two scrapes, and
Prometheus would keep the counts of the scrape before. So ``MetricsServer.final_scrape`` is
called at exit: it waits until a Prometheus scrape has *finished* (the whole response was
written) after the call began, for at most the budget ``final_scrape_budget`` computes:

- nobody scrapes the process (no Prometheus scrape seen, and the targets folder does not say
  a Prometheus watches it): no wait at all;
- scraped at least twice: 1.5 x the observed interval + 1 s (the next scrape is due);
- the targets folder carries ``.scrape-interval`` (seconds, written by ``headrace stack up``
  for the stack's Prometheus; write it for your own): 2 x that interval + 2 s, enough for
  file discovery to notice a short-lived process and scrape it once;
- scraped once, interval unknown: the cap.

Every budget is capped by ``metrics.final_scrape`` from the pipeline file (0 turns the wait
off). Only requests whose User-Agent starts with ``Prometheus/`` count: ``headrace status`` and
``run``'s status lines read the same endpoint and must not end the wait.

The same server answers ``/healthz`` for sources and sinks (the worker has its own, on its
web port): 200 ``{"status": "ok"}``, or 503 ``{"status": "unhealthy", "reason": ...}`` while
``set_unhealthy`` holds a reason (the stall watchdog sets it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

__all__ = [
    "INTERVAL_FILE",
    "MetricsServer",
    "ScrapeLog",
    "announced_interval",
    "final_scrape_budget",
    "set_unhealthy",
]

_unhealthy: list[str] = []


def set_unhealthy(reason: str | None) -> None:
    """What ``/healthz`` answers from now on: 503 with ``reason``, or 200 when None."""
    _unhealthy[:] = [] if reason is None else [reason]


def _healthz(start_response: Any) -> Iterable[bytes]:
    reason = _unhealthy[0] if _unhealthy else None
    body = {"status": "ok"} if reason is None else {"status": "unhealthy", "reason": reason}
    status = "200 OK" if reason is None else "503 Service Unavailable"
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


#: a file in the targets folder holding the watching Prometheus's scrape interval in seconds
INTERVAL_FILE = ".scrape-interval"


class ScrapeLog:
    """When the Prometheus scrapes of this process began (monotonic seconds), recorded once
    each has finished; thread-safe. A scrape counts as final only if it *began* after the
    wait did: its body was generated from the final counts."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._last: float | None = None
        self._interval: float | None = None
        self.count = 0

    def now(self) -> float:
        return self._clock()

    def scraped(self, began: float) -> None:
        """Record a finished scrape that began at ``began`` and wake anyone waiting."""
        with self._cond:
            if self._last is not None:
                self._interval = began - self._last
            self._last = began
            self.count += 1
            self._cond.notify_all()

    @property
    def interval(self) -> float | None:
        """Seconds between the last two scrapes, or None before the second one."""
        return self._interval

    def wait_next(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a scrape that begins from now on and finishes; True if
        one did."""
        with self._cond:
            since = self._clock()
            return self._cond.wait_for(
                lambda: self._last is not None and self._last > since, timeout=max(0.0, timeout)
            )


def announced_interval(folder: Path | None) -> float | None:
    """The scrape interval a Prometheus watching ``folder`` announced in ``.scrape-interval``."""
    if folder is None:
        return None
    try:
        value = float((folder / INTERVAL_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return value if value > 0 else None


def final_scrape_budget(
    cap: float, scrapes: int, observed: float | None, announced: float | None
) -> float:
    """Seconds to wait at exit for a final scrape (the rules are in the module docstring)."""
    if cap <= 0:
        return 0.0
    if observed is not None:
        return min(cap, 1.5 * observed + 1.0)
    if announced is not None:
        return min(cap, 2.0 * announced + 2.0)
    return cap if scrapes else 0.0


class _Body:
    """A WSGI response that records the scrape once the server has written all of it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        self._done()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes every few seconds would drown the process's own log."""


class MetricsServer:
    """``/metrics`` (prometheus-client's registry) on ``127.0.0.1:port`` in a daemon thread."""

    def __init__(self, port: int, scrapes: ScrapeLog | None = None) -> None:
        self.scrapes = scrapes or ScrapeLog()
        app = make_wsgi_app()

        def counted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                return _healthz(start_response)
            began = self.scrapes.now()
            body: Iterable[bytes] = app(environ, start_response)
            if not str(environ.get("HTTP_USER_AGENT", "")).startswith("Prometheus/"):
                return body
            return _Body(body, lambda: self.scrapes.scraped(began))

        self._httpd = make_server("127.0.0.1", port, counted, _Server, handler_class=_QuietHandler)
        self.port = int(self._httpd.server_port)
        thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics-http", daemon=True
        )
        thread.start()

    def close(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def final_scrape(self, cap: float, targets: Path | None) -> bool:
        """Wait (see the module docstring) for Prometheus to scrape the final counts; True if
        it did, False if the budget ran out or there was nothing to wait for."""
        budget = final_scrape_budget(
            cap, self.scrapes.count, self.scrapes.interval, announced_interval(targets)
        )
        if budget <= 0:
            return False
        return self.scrapes.wait_next(budget)
