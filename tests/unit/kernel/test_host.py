"""The process host: metrics served, SIGTERM becomes the work's stop, close always runs."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

from headrace import metrics
from headrace.host import host


class _Pipeline:
    name = "p"

    class metrics:  # the shape of Pipeline.metrics
        port = 0
        final_scrape = 0.0


def test_sigterm_stops_the_work_and_close_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[Any, ...]] = []

    def serve(*args: Any) -> int:
        served.append(args)
        return 1234

    monkeypatch.setattr(metrics, "serve", serve)
    stopped = threading.Event()
    closed: list[bool] = []
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def run() -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopped.wait(5), "SIGTERM did not reach stop"
        return "done"

    try:
        result = host(
            _Pipeline(),  # type: ignore[arg-type]
            kind="sink",
            name="s",
            run=run,
            stop=stopped.set,
            close=lambda: closed.append(True),
            metrics_port=0,
        )
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert result == "done" and closed == [True]
    assert served == [("p", "sink", "s", 0, 0.0)]


def test_close_runs_when_the_work_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "serve", lambda *a: 1)
    closed: list[bool] = []

    def boom() -> None:
        raise RuntimeError("broker gone")

    with pytest.raises(RuntimeError, match="broker gone"):
        host(
            _Pipeline(),  # type: ignore[arg-type]
            kind="source",
            name="x",
            run=boom,
            stop=None,
            close=lambda: closed.append(True),
        )
    assert closed == [True]
