"""``headrace status``: the running pipeline at a glance, read from each process's /metrics.

Processes announce themselves through file-based service discovery (``headrace.metrics.serve``
writes ``<targets dir>/<pipeline>-<kind>-<name>-<pid>.json``). ``collect`` scrapes each target
twice, ``interval`` seconds apart, and turns the counters into rates, and the end-to-end
latency histogram's increase between the two scrapes into a p99 (as PromQL's
``histogram_quantile`` does), so it reflects the last ``interval`` seconds.

Restarts and faults (issue #19): ``restarts`` is ``headrace_process_restarts`` (what the
supervisor passed), ``last_exit`` the reason of ``headrace_last_exit``; ``last_fault`` is the
most recent fault the process recovered from without a restart
(``headrace_last_fault_timestamp_seconds`` and ``headrace_last_fault_recovery_seconds``);
``broker_reachable`` is ``headrace_broker_reachable``. ``describe_fault`` words it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "LastFault",
    "ProcessView",
    "age",
    "collect",
    "describe_fault",
    "discover_targets",
    "histogram_quantile",
    "scrape",
]

_E2E_BUCKET = "headrace_end_to_end_seconds_bucket"


@dataclass(frozen=True)
class LastFault:
    """A fault a process recovered from: which, when it began (Unix s), how long it took."""

    fault: str
    began: float
    took: float


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
    #: p99 end-to-end latency (s) of the records written between the scrapes; None if none
    e2e_p99: float | None = None
    restarts: int | None = None
    last_exit: str | None = None
    last_fault: LastFault | None = None
    broker_reachable: bool | None = None


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
        earlier = _sum(before or {}, _E2E_BUCKET, by="le")
        increase = {
            float(le): n - earlier.get(le, 0.0)
            for le, n in _sum(after, _E2E_BUCKET, by="le").items()
        }
        view.e2e_p99 = histogram_quantile(0.99, increase)
        _faults(view, after)
        views.append(view)
    return views


_Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _faults(view: ProcessView, samples: _Samples) -> None:
    """Fill ``view``'s restarts, last exit, last fault and broker reachability."""
    restarts = _sum(samples, "headrace_process_restarts")
    view.restarts = int(sum(restarts.values())) if restarts else None
    for (name, labels), _value in samples.items():
        if name == "headrace_last_exit_info":
            view.last_exit = dict(labels).get("reason")
    last: tuple[float, str, str] | None = None  # (began, fault, process)
    for (name, labels), value in samples.items():
        if name == "headrace_last_fault_timestamp_seconds" and (last is None or value > last[0]):
            found = dict(labels)
            last = (value, found.get("fault", ""), found.get("process", ""))
    if last is not None:
        took = 0.0
        for (name, labels), value in samples.items():
            found = dict(labels)
            if (
                name == "headrace_last_fault_recovery_seconds"
                and (
                    found.get("fault"),
                    found.get("process"),
                )
                == last[1:]
            ):
                took = value
        view.last_fault = LastFault(last[1], last[0], took)
    reachable = _sum(samples, "headrace_broker_reachable")
    view.broker_reachable = None if not reachable else all(v >= 1 for v in reachable.values())


def age(seconds: float) -> str:
    """``"45s ago"``, ``"3m ago"``, ``"2h ago"``, ``"4d ago"`` (whole units, rounded down)."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def describe_fault(fault: LastFault | None, now: float | None = None) -> str:
    """``"broker_unreachable 3m ago, recovered in 45 s"``; ``"-"`` for none."""
    if fault is None:
        return "-"
    now = time.time() if now is None else now
    return f"{fault.fault} {age(now - fault.began)}, recovered in {fault.took:,.0f} s"


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """The ``q`` quantile of a histogram given as {upper bound: cumulative count}, linearly
    interpolated inside its bucket like PromQL's ``histogram_quantile``; None if empty.

    A quantile in the ``+Inf`` bucket is reported as the largest finite bound.
    """
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
