"""Target files of processes that died without cleaning up are pruned, live ones kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from headrace import metrics
from headrace_cli.main import main


def _target(folder: Path, name: str, started: str | None = None) -> Path:
    labels = {"headrace_process": "sink/x"}
    if started is not None:
        labels["__headrace_started"] = started
    path = folder / name
    path.write_text(json.dumps([{"targets": ["127.0.0.1:1"], "labels": labels}]))
    return path


def _killed_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.send_signal(signal.SIGKILL)
    child.wait()
    return child.pid


def test_prune_removes_dead_zombie_and_reused_pids_and_keeps_the_rest(tmp_path: Path) -> None:
    dead = _target(tmp_path, f"p-sink-x-{_killed_pid()}.json")
    zombie_proc = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie_proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    zombie = _target(tmp_path, f"p-sink-x-{zombie_proc.pid}.json")
    reused = _target(tmp_path, f"p-sink-x-{os.getpid()}.json", started="1")
    mine = metrics._start_ticks(os.getpid())
    alive = _target(tmp_path, f"p-stage-y-{os.getpid()}.json", started=str(mine))
    legacy = _target(tmp_path, f"p-source-z-{os.getpid()}.json")  # no start time recorded
    foreign = _target(tmp_path, "node-exporter.json")
    try:
        removed = metrics.prune_stale_targets(tmp_path)
    finally:
        zombie_proc.wait()
    assert sorted(removed) == sorted([dead, zombie, reused])
    assert sorted(tmp_path.iterdir()) == sorted([alive, legacy, foreign])


def test_registering_prunes_and_records_this_process_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = _target(tmp_path, f"p-sink-x-{_killed_pid()}.json")
    monkeypatch.setenv("HEADRACE_PROMETHEUS_TARGETS", str(tmp_path))
    metrics.serve("prunepipe", "sink", "orders", 0)
    [mine] = tmp_path.glob("prunepipe-sink-orders-*.json")
    assert not stale.exists()
    labels = json.loads(mine.read_text())[0]["labels"]
    assert labels["__headrace_started"] == str(metrics._start_ticks(os.getpid()))
    assert metrics.prune_stale_targets(tmp_path) == []


def test_status_prunes_stale_targets_before_reporting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = _target(tmp_path, f"p-sink-x-{_killed_pid()}.json")
    assert main(["status", "--targets", str(tmp_path)]) == 1
    assert not stale.exists()
    out = capsys.readouterr().out
    assert "removed 1 stale target" in out and "no running headrace process found" in out
