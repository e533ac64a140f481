"""The Prometheus console and the Grafana dashboard show the same panels, generated from
``headrace.observability.panels.PANELS``, and query only metrics some process exports."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import gateway.metrics  # noqa: F401 - registers the gateway's metrics
import headrace.metrics  # noqa: F401 - registers the metrics
from headrace.observability import CONSOLES, DASHBOARD
from headrace.observability.panels import PANELS, grafana_text, render_console

CONSOLE = CONSOLES / "headrace.html"
LIBRARY = CONSOLES / "headrace.lib"
REGENERATE = "run `.venv/bin/python -m headrace.observability.panels` and commit both files"


def _console_panels() -> list[tuple[str, str, list[str]]]:
    """(key, title, queries) of every panel in the console template, in page order."""
    html = CONSOLE.read_text()
    keys = re.findall(r'<div class="headrace_panel" id="panel-(\w+)"', html)
    titles = re.findall(r"<h3>(.*?)</h3>", html)
    graphs = re.findall(r'headrace\.graph\("(\w+)", (\[.*?\]), ', html)
    assert [k for k, _ in graphs] == keys, "every panel has exactly one graph, in order"
    assert len(titles) == len(keys)
    return [(k, t, json.loads(e)) for k, t, (_, e) in zip(keys, titles, graphs, strict=True)]


def _grafana_panels() -> list[tuple[str, list[str]]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], [t["expr"] for t in p["targets"]]) for p in dashboard["panels"]]


def test_console_file_is_generated_from_the_panel_list() -> None:
    assert CONSOLE.read_text() == render_console(), f"{CONSOLE} is stale; {REGENERATE}"


def test_grafana_file_is_generated_from_the_panel_list() -> None:
    assert DASHBOARD.read_text() == grafana_text(), f"{DASHBOARD} is stale; {REGENERATE}"


def test_console_and_grafana_list_the_same_panels_with_the_same_queries() -> None:
    console = _console_panels()
    grafana = _grafana_panels()
    assert [(t, q) for _, t, q in console] == grafana
    expected = [(p.key, p.title, [q.expr for q in p.queries]) for p in PANELS]
    assert console == expected
    assert len({k for k, _, _ in console}) == len(console), "panel keys are unique"


def test_the_panels_cover_what_an_operator_needs() -> None:
    metrics = set().union(*(p.metric_names() for p in PANELS))
    for needed in (
        "headrace_records_total",
        "headrace_consumer_lag",
        "headrace_dlq_records_total",
        "headrace_rate_limit_wait_seconds_total",
        "headrace_window_state_keys",
        "headrace_batch_seconds_bucket",
        "headrace_retries_total",
        "headrace_throttle_events_total",
        "headrace_process_restarts",
        "headrace_fault_recoveries_total",
        "headrace_fault_recovery_seconds_bucket",
        "headrace_end_to_end_seconds_bucket",
        "headrace_healthy",
        "headrace_stalled_partitions",
        "headrace_gateway_requests_total",
        "headrace_gateway_records_total",
        "headrace_gateway_produce_seconds_bucket",
        "headrace_gateway_ratelimited_total",
        "headrace_gateway_breaker_state",
    ):
        assert needed in metrics, f"no panel shows {needed}"
    gateway_panels = [p for p in PANELS if any("gateway" in m for m in p.metric_names())]
    assert gateway_panels and all(p.empty == "no gateway running" for p in gateway_panels)


def _exported_names() -> set[str]:
    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):
        for metric in collector.collect():
            names.add(metric.name)
            if metric.type == "histogram":
                names.update({f"{metric.name}_bucket", f"{metric.name}_count"})
            if metric.type == "counter":
                names.add(f"{metric.name}_total")
            if metric.type == "info":
                names.add(f"{metric.name}_info")
    return names


def test_every_panel_queries_metrics_that_a_process_exports() -> None:
    exported = _exported_names()
    for panel in PANELS:
        assert panel.metric_names(), f"panel {panel.key} queries no headrace metric"
        unknown = panel.metric_names() - exported
        assert not unknown, f"panel {panel.key} queries {sorted(unknown)}, which nothing exports"


def test_every_query_filters_by_the_chosen_pipeline_where_it_can() -> None:
    for panel in PANELS:
        for query in panel.queries:
            if "gateway" in query.expr:  # the gateway's metrics have no pipeline label
                assert "$pipeline" not in query.expr
            else:
                assert 'pipeline=~"$pipeline"' in query.expr, (panel.key, query.expr)


def test_the_console_uses_only_templates_its_library_defines() -> None:
    defined = set(re.findall(r'{{\s*define\s+"(\w+)"', LIBRARY.read_text()))
    used = set(re.findall(r'{{\s*template\s+"(\w+)"', CONSOLE.read_text()))
    used |= set(re.findall(r'{{\s*template\s+"(\w+)"', LIBRARY.read_text()))
    assert used <= defined, sorted(used - defined)
    for text in (CONSOLE.read_text(), LIBRARY.read_text()):
        assert text.count("{{") == text.count("}}")


def test_the_dashboard_page_describes_every_panel() -> None:
    page = (CONSOLES.parents[2] / "docs" / "dashboard.md").read_text()
    for panel in PANELS:
        assert f"| {panel.title} |" in page, f"docs/dashboard.md has no row for {panel.title!r}"
