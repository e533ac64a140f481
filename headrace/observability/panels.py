"""The dashboard's panels, in one list: the Prometheus console and the Grafana JSON.

``PANELS`` is the single source of both shipped dashboards: the console template
``consoles/headrace.html`` (served by Prometheus itself at ``/consoles/headrace.html``) and
``grafana/headrace.json`` (Grafana, the Docker path). Both files are generated from it
(``python -m headrace.observability.panels`` rewrites them) and a unit test checks that the
committed files equal what this module renders, so the two always show the same panels with
the same PromQL.

Queries may use ``$pipeline``: Grafana's dashboard variable of that name, and the console's
``?pipeline=NAME`` URL parameter (a regular expression; default every pipeline). A panel's
``empty`` text is what the console shows, explicitly, when its queries return no series
(e.g. "no gateway running"): a missing line must never be mistaken for a zero.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.observability import CONSOLES, DASHBOARD

__all__ = ["PANELS", "Panel", "Query", "render_console", "render_grafana", "write"]

CONSOLE_FILE = CONSOLES / "headrace.html"
GRAFANA_FILE = DASHBOARD

#: every pipeline: the value ``$pipeline`` takes when no pipeline is chosen
ALL_PIPELINES = ".*"
_P = 'pipeline=~"$pipeline"'


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and its legend (Grafana's ``{{label}}`` syntax)."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One panel: a graph in the console, a timeseries (or stat) panel in Grafana.

    ``key`` is the stable id (the console's ``panel-<key>`` element, the test's handle);
    ``unit`` a Grafana unit id; ``y_units`` the console's axis suffix; ``empty`` the text shown
    when the panel's queries return no series; ``stat`` makes the Grafana panel a stat.
    """

    key: str
    title: str
    queries: tuple[Query, ...]
    empty: str
    unit: str = "short"
    y_units: str = ""
    stat: bool = False
    section: str = "Pipeline"

    def metric_names(self) -> set[str]:
        """The ``headrace_*`` metric names the panel's queries read."""
        return {m for q in self.queries for m in re.findall(r"\bheadrace_[a-z_]+\b", q.expr)}


def _quantiles(metric: str, by: str, where: str, legend: str) -> tuple[Query, Query]:
    return tuple(  # type: ignore[return-value]
        Query(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{where}}}[5m])))",
            f"{legend} p{int(q * 100)}",
        )
        for q in (0.5, 0.99)
    )


PANELS: tuple[Panel, ...] = (
    Panel(
        "records",
        "Throughput per stage (records/s)",
        (
            Query(
                "sum by (pipeline, kind, stage, outcome) "
                f"(rate(headrace_records_total{{{_P}}}[1m]))",
                "{{kind}} {{stage}} {{outcome}}",
            ),
        ),
        empty="no headrace process has handled a record",
        unit="ops",
        y_units="/s",
    ),
    Panel(
        "lag",
        "Consumer lag per group and topic (messages)",
        (
            Query(
                f"sum by (pipeline, kind, stage, topic) (headrace_consumer_lag{{{_P}}})",
                "{{kind}} {{stage}} {{topic}}",
            ),
        ),
        empty="no worker or sink is consuming",
    ),
    Panel(
        "dlq",
        "Dead letters (records/s)",
        (
            Query(
                f"sum by (pipeline, kind, stage) (rate(headrace_dlq_records_total{{{_P}}}[5m]))",
                "{{kind}} {{stage}}",
            ),
        ),
        empty="no process counts dead letters",
        unit="ops",
        y_units="/s",
    ),
    Panel(
        "ratelimit",
        "Rate-limit waits (seconds waited per second)",
        (
            Query(
                "sum by (pipeline, stage) "
                f"(rate(headrace_rate_limit_wait_seconds_total{{{_P}}}[1m]))",
                "{{stage}}",
            ),
        ),
        empty="no stage has waited on a rate limit",
        unit="percentunit",
    ),
    Panel(
        "window",
        "Window state (open entries)",
        (
            Query(
                f"sum by (pipeline, stage) (headrace_window_state_keys{{{_P}}})",
                "{{stage}}",
            ),
        ),
        empty="no worker is running stages",
    ),
    Panel(
        "sink_latency",
        "Sink write latency (batch p50/p99)",
        _quantiles("headrace_batch_seconds", "stage", f'kind="sink",{_P}', "{{stage}}"),
        empty="no sink has written a batch",
        unit="s",
        y_units="s",
    ),
    Panel(
        "sink_retries",
        "Sink retries and throttles (per second)",
        (
            Query(
                f'sum by (stage, reason) (rate(headrace_retries_total{{kind="sink",{_P}}}[5m]))',
                "{{stage}} retry {{reason}}",
            ),
            Query(
                f"sum by (stage) (rate(headrace_throttle_events_total{{{_P}}}[5m]))",
                "{{stage}} throttled",
            ),
        ),
        empty="no sink is running",
        unit="ops",
        y_units="/s",
    ),
    Panel(
        "e2e",
        "End-to-end latency (source commit to sink, p50/p99)",
        _quantiles("headrace_end_to_end_seconds", "pipeline, stage", _P, "{{stage}}"),
        empty="no sink has written a record",
        unit="s",
        y_units="s",
    ),
    Panel(
        "e2e_share",
        "End-to-end within 2 s (share of records written, 5m)",
        (
            Query(
                "sum by (pipeline, stage) "
                f'(rate(headrace_end_to_end_seconds_bucket{{le="2.0",{_P}}}[5m])) '
                "/ sum by (pipeline, stage) "
                f"(rate(headrace_end_to_end_seconds_count{{{_P}}}[5m]))",
                "{{stage}}",
            ),
        ),
        empty="no sink has written a record",
        unit="percentunit",
        stat=True,
    ),
    Panel(
        "health",
        "Health and stalled partitions (workers)",
        (
            Query(
                f"min by (pipeline, stage) (headrace_healthy{{{_P}}})",
                "{{stage}} healthy (1 yes, 0 no)",
            ),
            Query(
                f"sum by (pipeline, stage) (headrace_stalled_partitions{{{_P}}})",
                "{{stage}} stalled partitions",
            ),
        ),
        empty="no worker reports its health",
        section="Processes",
    ),
    Panel(
        "processes",
        "Processes up (scraped now)",
        (
            Query(
                f"count by (pipeline, kind) (headrace_process_info{{{_P}}})",
                "{{pipeline}} {{kind}}",
            ),
        ),
        empty="Prometheus scrapes no headrace process",
        stat=True,
        section="Processes",
    ),
    Panel(
        "broker",
        "Kafka broker reachable (1 yes, 0 no, per process)",
        (
            Query(
                f"min by (pipeline, process) (headrace_broker_reachable{{{_P}}})",
                "{{process}}",
            ),
        ),
        empty="no process reports whether it reaches the broker",
        section="Processes",
    ),
    Panel(
        "restarts",
        "Process restarts (by its supervisor)",
        (
            Query(
                f"max by (pipeline, process) (headrace_process_restarts{{{_P}}})",
                "{{process}}",
            ),
        ),
        empty="no process reports restarts",
        section="Processes",
    ),
    Panel(
        "faults",
        "Fault recoveries (per 15 min)",
        (
            Query(
                "sum by (pipeline, process, fault) "
                f"(increase(headrace_fault_recoveries_total{{{_P}}}[15m]))",
                "{{process}} {{fault}}",
            ),
        ),
        empty="no fault recovered from",
        section="Processes",
    ),
    Panel(
        "fault_time",
        "Fault recovery time (p99, 1h)",
        (
            Query(
                "histogram_quantile(0.99, sum by (le, pipeline, process, fault) "
                f"(rate(headrace_fault_recovery_seconds_bucket{{{_P}}}[1h])))",
                "{{process}} {{fault}}",
            ),
        ),
        empty="no fault recovered from",
        unit="s",
        y_units="s",
        section="Processes",
    ),
    Panel(
        "gateway_rates",
        "Gateway requests, records and rate-limited (per second)",
        (
            Query(
                "sum by (route, status) (rate(headrace_gateway_requests_total[1m]))",
                "{{route}} {{status}}",
            ),
            Query(
                "sum by (topic, outcome) (rate(headrace_gateway_records_total[1m]))",
                "records {{topic}} {{outcome}}",
            ),
            Query(
                "sum by (client, topic) (rate(headrace_gateway_ratelimited_total[1m]))",
                "rate-limited {{client}} {{topic}}",
            ),
        ),
        empty="no gateway running",
        unit="ops",
        y_units="/s",
        section="Gateway",
    ),
    Panel(
        "gateway_latency",
        "Gateway produce latency (p50/p99)",
        _quantiles("headrace_gateway_produce_seconds", "topic", "", "{{topic}}"),
        empty="no gateway running",
        unit="s",
        y_units="s",
        section="Gateway",
    ),
    Panel(
        "gateway_breaker",
        "Gateway circuit breaker (0 closed, 1 half-open, 2 open)",
        (Query("max by (instance) (headrace_gateway_breaker_state)", "{{instance}}"),),
        empty="no gateway running",
        section="Gateway",
    ),
)


# -- the console ------------------------------------------------------------------------------


def _console_legend(legend: str) -> str:
    """Grafana's ``{{label}}`` as the console library's ``[[ label ]]``."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", r"[[ \1 ]]", legend)


def _go_raw(expr: str) -> str:
    """``expr`` as a Go template raw string (PromQL here never holds a backquote)."""
    if "`" in expr:
        raise ValueError(f"a panel query holds a backquote, which the console cannot quote: {expr}")
    return f"`{expr}`"


def _console_panel(panel: Panel) -> str:
    exprs = json.dumps([q.expr for q in panel.queries])
    names = json.dumps([_console_legend(q.legend) for q in panel.queries])
    rows = "\n".join(
        f'  {{{{ template "headrace_values" (args {_go_raw(q.expr)} $pipeline) }}}}'
        for q in panel.queries
    )
    return f"""<div class="headrace_panel" id="panel-{panel.key}" data-state="loading">
<h3>{panel.title}</h3>
<div class="headrace_empty" style="display: none">{panel.empty}</div>
<div class="headrace_graph"></div>
<script>
headrace.graph("{panel.key}", {exprs}, {names}, {json.dumps(panel.y_units)});
</script>
<table class="table table-sm headrace_values">
{rows}
</table>
</div>
"""


_CONSOLE_HEAD = """{{/* Generated from headrace/observability/panels.py (PANELS): do not edit
     here; edit the panel list and run `python -m headrace.observability.panels`. */}}
{{ template "headrace_head" . }}
{{ $pipeline := or .Params.pipeline "%(all)s" }}
<h1>headrace</h1>
<p class="headrace_about">Pipeline <code>{{ $pipeline }}</code>
(<code>?pipeline=NAME</code> shows one pipeline). Graphs: the range set below (default the
last hour);
each table: the values when this page was loaded.</p>
{{ template "headrace_timecontrol" . }}
"""


def render_console() -> str:
    """The console template ``consoles/headrace.html``: one graph and one value table per
    panel, sections in ``PANELS`` order, built on ``consoles/headrace.lib``."""
    parts = [_CONSOLE_HEAD % {"all": ALL_PIPELINES}]
    sections = dict.fromkeys(p.section for p in PANELS)
    for section in sections:
        parts.append(f'<h2>{section}</h2>\n<div class="headrace_panels">\n')
        parts.extend(_console_panel(p) for p in PANELS if p.section == section)
        parts.append("</div>\n")
    parts.append('{{ template "headrace_tail" . }}\n')
    return "".join(parts)


# -- Grafana ----------------------------------------------------------------------------------

_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _grafana_panel(number: int, panel: Panel) -> dict[str, Any]:
    return {
        "id": number,
        "title": panel.title,
        "type": "stat" if panel.stat else "timeseries",
        "datasource": _DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((number - 1) % 2), "y": 8 * ((number - 1) // 2)},
        # Grafana's standard "No value" option: the same explicit text as the console's
        "fieldConfig": {"defaults": {"unit": panel.unit, "noValue": panel.empty}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": q.expr,
                "legendFormat": q.legend,
                "datasource": _DATASOURCE,
            }
            for i, q in enumerate(panel.queries)
        ],
    }


def render_grafana() -> dict[str, Any]:
    """The Grafana dashboard ``grafana/headrace.json`` (a ``pipeline`` variable, All = every
    pipeline, and one panel per entry of ``PANELS``, two per row)."""
    return {
        "title": "headrace",
        "uid": "headrace",
        "schemaVersion": 39,
        "version": 2,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "tags": ["headrace"],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
                {
                    "name": "pipeline",
                    "type": "query",
                    "label": "Pipeline",
                    "datasource": _DATASOURCE,
                    "query": "label_values(headrace_process_info, pipeline)",
                    "refresh": 2,
                    "includeAll": True,
                    "allValue": ALL_PIPELINES,
                    "multi": False,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": [_grafana_panel(i, p) for i, p in enumerate(PANELS, start=1)],
    }


def grafana_text() -> str:
    """``render_grafana()`` as the file's text (indented, sorted as built, final newline)."""
    return json.dumps(render_grafana(), indent=2) + "\n"


def write() -> list[Path]:
    """Rewrite both generated files from ``PANELS``; return their paths."""
    CONSOLE_FILE.write_text(render_console())
    GRAFANA_FILE.write_text(grafana_text())
    return [CONSOLE_FILE, GRAFANA_FILE]


if __name__ == "__main__":
    for path in write():
        print(f"wrote {path}")
