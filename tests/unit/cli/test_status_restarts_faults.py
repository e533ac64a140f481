"""`headrace status` shows restarts and the last fault recovered from (issue #19)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from headrace import metrics
from headrace.faults import FaultTracker
from headrace.host import supervised
from headrace_cli.main import main
from headrace_cli.status_cmd import restarts_text
from headrace_cli.status_view import LastFault, age, collect, describe_fault, discover_targets


def test_ages_and_fault_words() -> None:
    assert [age(s) for s in (0, 59.9, 60, 3599, 3600, 86400 * 2)] == [
        "0s ago",
        "59s ago",
        "1m ago",
        "59m ago",
        "1h ago",
        "2d ago",
    ]
    fault = LastFault("broker_unreachable", began=1000.0, took=45.2)
    assert describe_fault(fault, now=1180.0) == "broker_unreachable 3m ago, recovered in 45 s"
    assert describe_fault(None) == "-"
    assert restarts_text(None, None) == "-"
    assert restarts_text(0, None) == "0"
    assert restarts_text(2, "exit 1: sink s: no batch committed for 300 s") == "2 (exit 1)"
    assert restarts_text(1, "killed by SIGKILL") == "1 (killed by SIGKILL)"


def test_status_reads_restarts_and_the_last_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEADRACE_PROMETHEUS_TARGETS", str(tmp_path))
    monkeypatch.setenv("HEADRACE_RESTARTS", "2")
    monkeypatch.setenv("HEADRACE_LAST_EXIT", "exit 1: sink revenue_mongo: no batch committed")
    metrics.serve("faultpipe", "sink", "revenue_mongo", 0)
    supervised("faultpipe", "sink/revenue_mongo")
    clock = [0.0]
    started = time.time() + 3600 - 190  # newer than any other test's fault in this registry
    tracker = FaultTracker("faultpipe", "sink/revenue_mongo", clock=lambda: clock[0])
    tracker.begin("broker_unreachable", since=(0.0, started))
    clock[0] = 45.0
    tracker.end("broker_unreachable")
    [view] = collect(discover_targets(tmp_path), interval=0.05)
    assert view.restarts is not None and view.restarts >= 2
    assert view.last_exit == "exit 1: sink revenue_mongo: no batch committed"
    assert view.last_fault == LastFault("broker_unreachable", started, 45.0)
    assert view.broker_reachable is not None
    code = main(["status", "--targets", str(tmp_path), "--interval", "0.05"])
    out = capsys.readouterr().out
    assert code == 0
    header = out.splitlines()[0]
    assert "restarts" in header and "last fault" in header
    assert "(exit 1)" in out
    assert "broker_unreachable" in out and "recovered in 45 s" in out
