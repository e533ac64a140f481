"""Shipped alerting rules pass promtool; every dashboard query names metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from prometheus_client import REGISTRY

import gateway.metrics  # noqa: F401 - registers the gateway's metrics (dashboard panels)
import headrace.metrics  # noqa: F401 - registers the metrics
from headrace.observability import ALERTS, ALERTS_TEST, DASHBOARD

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _exported_names() -> set[str]:
    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):
        for metric in collector.collect():
            for sample in metric.samples:
                names.add(sample.name)
            names.add(metric.name)
            if metric.type == "histogram":
                names.update(
                    {f"{metric.name}_bucket", f"{metric.name}_sum", f"{metric.name}_count"}
                )
            if metric.type == "counter":
                names.add(f"{metric.name}_total")
    return names


def _queried(expr: str) -> set[str]:
    return set(re.findall(r"\bheadrace_[a-z_]+\b", expr))


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_promtool_unit_tests_the_alerts() -> None:
    result = subprocess.run(
        [PROMTOOL, "test", "rules", ALERTS_TEST.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=ALERTS_TEST.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_query_only_existing_metrics() -> None:
    exported = _exported_names()
    text = ALERTS.read_text()
    for name in _queried(text):
        assert name in exported, f"alerts.yml queries {name}, which no process exports"


def test_every_dashboard_panel_queries_existing_metrics() -> None:
    exported = _exported_names()
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"], "the dashboard has no panels"
    for panel in dashboard["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            queried = _queried(expr)
            assert queried or "up{" in expr, f"panel {panel['title']!r}: {expr}"
            for name in queried:
                assert name in exported, f"panel {panel['title']!r} queries unknown {name}"


@pytest.mark.parametrize(
    "title",
    [
        "Throughput per stage",
        "End-to-end latency",
        "End-to-end within 2 s",
        "Consumer lag",
        "Dead letters",
        "Rate-limit waits",
        "Sink write latency",
        "Sink retries",
        "Window state",
    ],
)
def test_dashboard_has_the_panels_operators_need(title: str) -> None:
    titles = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    assert any(t.startswith(title) for t in titles), titles
