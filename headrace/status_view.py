"""``headrace status``: the running pipeline at a glance, read from each process's /metrics.

Processes announce themselves through file-based service discovery (``headrace.metrics.serve``
writes ``<targets dir>/<pipeline>-<kind>-<name>-<pid>.json``). ``collect`` scrapes each target
twice, ``interval`` seconds apart, and turns the counters into rates.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["ProcessView", "collect", "discover_targets", "scrape"]


@dataclass
class ProcessView:
    """What one process reports: ``rates`` (outcome -> records/s), lag, DLQ total, health."""

    process: str
    address: str
    up: bool
    rates: dict[str, float] = field(default_factory=dict)
    lag: float = 0.0
    dlq_total: float = 0.0
    healthy: bool | None = None
    stalled: float = 0.0


def discover_targets(folder: Path, pattern: str = "*.json") -> list[tuple[str, str]]:
    """(process label, host:port) for every target file in ``folder`` matching ``pattern``."""
    found = []
    for path in sorted(folder.glob(pattern)):
        try:
            for group in json.loads(path.read_text()):
                label = group.get("labels", {}).get("headrace_process", path.stem)
                for target in group.get("targets", []):
                    found.append((label, target))
        except (OSError, ValueError):
            continue
    return found


def scrape(address: str, timeout: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://{address}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _sum(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, by: str | None = None
) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (n, labels), value in samples.items():
        if n == name:
            out[dict(labels).get(by, "") if by else ""] += value
    return dict(out)


def collect(
    targets: list[tuple[str, str]], interval: float = 2.0, timeout: float = 2.0
) -> list[ProcessView]:
    """Scrape every target twice and compute rates; unreachable targets are ``up=False``."""
    first: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float] | None] = {}
    for _, address in targets:
        try:
            first[address] = scrape(address, timeout)
        except OSError:
            first[address] = None
    time.sleep(interval)
    views = []
    for label, address in targets:
        before = first.get(address)
        try:
            after = scrape(address, timeout)
        except OSError:
            views.append(ProcessView(label, address, up=False))
            continue
        view = ProcessView(label, address, up=True)
        now = _sum(after, "headrace_records_total", by="outcome")
        then = _sum(before or {}, "headrace_records_total", by="outcome")
        view.rates = {k: max(0.0, v - then.get(k, 0.0)) / interval for k, v in now.items()}
        view.lag = sum(_sum(after, "headrace_consumer_lag").values())
        view.dlq_total = sum(_sum(after, "headrace_dlq_records_total").values())
        view.stalled = sum(_sum(after, "headrace_stalled_partitions").values())
        health = _sum(after, "headrace_healthy")
        view.healthy = None if not health else all(v >= 1 for v in health.values())
        views.append(view)
    return views
