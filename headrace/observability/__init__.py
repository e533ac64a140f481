"""Shipped observability files: Prometheus alerting rules (and their tests) and dashboards.

``CONSOLES`` holds the Prometheus console template ``headrace.html`` and its library
``headrace.lib`` (both for ``--web.console.templates`` / ``--web.console.libraries``; the
template is generated from ``panels.PANELS``, like the Grafana ``DASHBOARD``).
``console_url`` says where a running Prometheus serves the console, if it does.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

__all__ = [
    "ALERTS",
    "ALERTS_TEST",
    "CONSOLES",
    "CONSOLE_PATH",
    "DASHBOARD",
    "HERE",
    "console_url",
]

HERE = Path(__file__).resolve().parent
ALERTS = HERE / "alerts.yml"
ALERTS_TEST = HERE / "alerts_test.yml"
DASHBOARD = HERE / "grafana" / "headrace.json"
CONSOLES = HERE / "consoles"
#: where Prometheus serves the headrace console (``/consoles/<file in --web.console.templates>``)
CONSOLE_PATH = "/consoles/headrace.html"


def console_url(prometheus_url: str, timeout: float = 2.0) -> str | None:
    """``<prometheus_url>/consoles/headrace.html`` when that Prometheus answers and was started
    with a ``--web.console.templates`` folder (on this machine) holding ``headrace.html``;
    else None (not running, unreachable, or started without the console). Reads
    ``/api/v1/status/flags``: cheap, and it does not render the console."""
    base = prometheus_url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/api/v1/status/flags", timeout=timeout) as resp:  # noqa: S310
            flags = json.loads(resp.read()).get("data", {})
    except (OSError, ValueError):
        return None
    folder = flags.get("web.console.templates") if isinstance(flags, dict) else None
    if not folder or not (Path(folder) / "headrace.html").is_file():
        return None
    return base + CONSOLE_PATH
