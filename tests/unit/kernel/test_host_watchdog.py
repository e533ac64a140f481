"""The host runs the stall watchdog around the work: the health it reports, and exit 1 (a
WedgedError) when it fired and the work stopped cleanly (issue #19)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, cast

import pytest
from prometheus_client import REGISTRY

from headrace import metrics
from headrace.errors import WedgedError
from headrace.host import host
from headrace.watchdog import Stall, Watchdog

_exits: list[int] = []


@pytest.fixture(autouse=True)
def _no_real_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fired watchdog ends its process with os._exit after its grace: not pytest's."""
    monkeypatch.setattr(metrics, "serve", lambda *a: 1)
    exit = cast(Callable[[int], NoReturn], _exits.append)
    monkeypatch.setattr("headrace.host.Watchdog", functools.partial(Watchdog, exit=exit))


class _Pipeline:
    name = "hostwd"

    class metrics:  # the shape of Pipeline.metrics
        port = 0
        final_scrape = 0.0

    class watchdog:  # the shape of Pipeline.watchdog
        unhealthy_after = 0.05
        exit_after = 0.2
        grace = 0.5


def test_a_fired_watchdog_stops_the_work_and_the_host_raises() -> None:
    stopped = threading.Event()
    since = time.monotonic()

    def run() -> str:
        assert stopped.wait(10), "the watchdog did not ask for a stop"
        return "stopped"

    with pytest.raises(WedgedError, match=r"^sink s: no batch committed for .* while 3 records"):
        host(
            _Pipeline(),  # type: ignore[arg-type]
            kind="sink",
            name="s",
            run=run,
            stop=stopped.set,
            stall=lambda: Stall(since, "3 records are pending on t[0]"),
            stuck="no batch committed",
        )
    labels = {"pipeline": "hostwd", "stage": "s", "kind": "sink"}
    assert REGISTRY.get_sample_value("headrace_healthy", labels) == 0


def test_an_idle_process_stays_healthy() -> None:
    def run() -> Any:
        time.sleep(0.4)  # twice exit_after, idle
        return 7

    result = host(
        _Pipeline(),  # type: ignore[arg-type]
        kind="source",
        name="idle",
        run=run,
        stop=lambda: None,
        stall=lambda: None,
    )
    assert result == 7
    labels = {"pipeline": "hostwd", "stage": "idle", "kind": "source"}
    assert REGISTRY.get_sample_value("headrace_healthy", labels) == 1
