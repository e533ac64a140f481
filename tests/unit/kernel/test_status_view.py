"""`headrace status` finds processes through target files and turns counters into rates."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from headrace import metrics
from headrace_cli.main import main
from headrace_cli.status_view import collect, discover_targets


def test_serve_registers_a_target_and_status_reads_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEADRACE_PROMETHEUS_TARGETS", str(tmp_path))
    port = metrics.serve("statuspipe", "sink", "orders_mongo", 0)
    [target_file] = list(tmp_path.glob("statuspipe-sink-orders_mongo-*.json"))
    assert json.loads(target_file.read_text())[0]["targets"] == [f"127.0.0.1:{port}"]
    assert discover_targets(tmp_path) == [("sink/orders_mongo", f"127.0.0.1:{port}")]

    labels = {"pipeline": "statuspipe", "stage": "orders_mongo", "kind": "sink"}
    metrics.CONSUMER_LAG.labels(**labels, topic="orders.clean").set(42)
    metrics.DLQ_RECORDS.labels(**labels).inc(3)
    metrics.HEALTHY.labels(**labels).set(1)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            metrics.RECORDS.labels(**labels, outcome="written").inc(100)
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        [view] = collect(discover_targets(tmp_path), interval=0.5)
        code = main(["status", "--targets", str(tmp_path), "--interval", "0.3"])
    finally:
        stop.set()
        writer.join()
    # The registry is process-wide: other tests may have counted too, so compare at least.
    assert view.up and view.lag >= 42 and view.dlq_total >= 3
    assert view.rates["written"] > 1000
    out = capsys.readouterr().out
    assert code == 0
    assert "sink/orders_mongo" in out and "written" in out and "ok" in out


def test_status_without_processes_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--targets", str(tmp_path)]) == 1
    assert "no running headrace process found" in capsys.readouterr().out


def test_a_dead_target_is_reported_down(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(
        json.dumps([{"targets": ["127.0.0.1:1"], "labels": {"headrace_process": "stage/x"}}])
    )
    [view] = collect(discover_targets(tmp_path), interval=0.01, timeout=0.5)
    assert view.process == "stage/x" and not view.up


def test_histogram_quantile_interpolates_like_promql() -> None:
    from headrace_cli.status_view import histogram_quantile

    inf = float("inf")
    assert histogram_quantile(0.99, {0.1: 0, 1.0: 0, inf: 0}) is None
    # 100 records: 50 under 0.1 s, 100 under 1 s -> p99 is 98% of the way from 0.1 to 1
    assert histogram_quantile(0.99, {0.1: 50, 1.0: 100, inf: 100}) == 0.1 + 0.9 * 49 / 50
    assert histogram_quantile(0.5, {0.1: 50, 1.0: 100, inf: 100}) == 0.1
    assert histogram_quantile(0.99, {0.1: 0, 1.0: 10, inf: 20}) == 1.0  # +Inf: largest bound


def test_status_shows_the_sinks_end_to_end_p99(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADRACE_PROMETHEUS_TARGETS", str(tmp_path))
    metrics.serve("e2estatus", "sink", "orders_dynamo", 0)
    child = metrics.E2E_LATENCY.labels(pipeline="e2estatus", stage="orders_dynamo", kind="sink")
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            metrics.observe_end_to_end(child, [int(time.time() * 1000) - 300] * 10)
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        views = collect(discover_targets(tmp_path, "e2estatus-*.json"), interval=0.5)
    finally:
        stop.set()
        writer.join()
    [view] = views
    assert view.e2e_p99 is not None and 0.25 < view.e2e_p99 <= 0.5  # in the 0.25-0.5 s bucket
