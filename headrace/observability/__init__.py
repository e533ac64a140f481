"""Shipped observability files: Prometheus alerting rules (and their tests) and dashboards."""

from pathlib import Path

__all__ = ["ALERTS", "ALERTS_TEST", "DASHBOARD", "HERE"]

HERE = Path(__file__).resolve().parent
ALERTS = HERE / "alerts.yml"
ALERTS_TEST = HERE / "alerts_test.yml"
DASHBOARD = HERE / "grafana" / "headrace.json"
