"""The /metrics endpoint counts Prometheus scrapes and a process waits for its final one."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest

from headrace.metrics_server import (
    INTERVAL_FILE,
    MetricsServer,
    ScrapeLog,
    announced_interval,
    final_scrape_budget,
)


def _get(port: int, agent: str) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"User-Agent": agent})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return bytes(resp.read())


@pytest.mark.parametrize(
    ("cap", "scrapes", "observed", "announced", "budget"),
    [
        (15.0, 0, None, None, 0.0),  # nobody scrapes us: exit at once
        (15.0, 1, None, None, 15.0),  # scraped, interval unknown: the cap
        (15.0, 5, 2.0, None, 4.0),  # next scrape due: 1.5 x interval + 1
        (15.0, 5, 60.0, None, 15.0),  # a slow Prometheus never exceeds the cap
        (15.0, 0, None, 5.0, 12.0),  # a watched folder: discovery + one scrape
        (15.0, 3, 2.0, 5.0, 4.0),  # what we observed beats what was announced
        (0.0, 5, 2.0, 5.0, 0.0),  # 0 turns the wait off
    ],
)
def test_budget(
    cap: float, scrapes: int, observed: float | None, announced: float | None, budget: float
) -> None:
    assert final_scrape_budget(cap, scrapes, observed, announced) == budget


def test_announced_interval(tmp_path: Path) -> None:
    assert announced_interval(None) is None
    assert announced_interval(tmp_path) is None
    (tmp_path / INTERVAL_FILE).write_text("5\n")
    assert announced_interval(tmp_path) == 5.0
    (tmp_path / INTERVAL_FILE).write_text("soon")
    assert announced_interval(tmp_path) is None


def test_only_a_scrape_that_began_after_the_wait_ends_it() -> None:
    now = [100.0]
    log = ScrapeLog(clock=lambda: now[0])
    log.scraped(began=99.0)  # began before the wait: its counts may not be final
    assert log.count == 1
    assert log.wait_next(timeout=0.05) is False
    now[0] = 101.0
    timer = threading.Timer(0.05, lambda: log.scraped(began=101.5))
    timer.start()
    assert log.wait_next(timeout=5) is True
    assert log.interval == pytest.approx(2.5)


def test_server_serves_metrics_and_counts_only_prometheus() -> None:
    server = MetricsServer(0)
    body = _get(server.port, "curl/8")
    assert b"# HELP" in body
    assert server.scrapes.count == 0  # headrace status and run read /metrics too
    _get(server.port, "Prometheus/2.45.3")
    assert server.scrapes.count == 1


def test_final_scrape_waits_for_the_next_prometheus_scrape() -> None:
    server = MetricsServer(0)
    _get(server.port, "Prometheus/2.45.3")  # a Prometheus watches us
    timer = threading.Timer(0.3, lambda: _get(server.port, "Prometheus/2.45.3"))
    timer.start()
    started = time.monotonic()
    assert server.final_scrape(10.0, None) is True
    assert 0.2 < time.monotonic() - started < 5


def test_final_scrape_does_not_wait_when_nobody_scrapes(tmp_path: Path) -> None:
    server = MetricsServer(0)
    started = time.monotonic()
    assert server.final_scrape(10.0, tmp_path) is False
    assert time.monotonic() - started < 1
