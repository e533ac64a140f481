"""The gateway's Prometheus metrics (names and labels are fixed: the dashboard and the alert
rules read them; docs/gateway.md lists them).

- ``headrace_gateway_requests_total{route,status,client}``: requests answered;
- ``headrace_gateway_records_total{topic,outcome}``: records, outcome ``accepted|rejected``;
- ``headrace_gateway_produce_seconds{topic}``: a request's produce call to the broker's last
  acknowledgement;
- ``headrace_gateway_ratelimited_total{client,topic}``: requests refused (429) by a limit;
- ``headrace_gateway_breaker_state``: 0 closed, 1 half-open, 2 open.

Labels are bounded: ``route`` is a route template, ``topic`` a declared topic, ``status`` an
HTTP status; ``client`` (a token's ``sub`` or a peer address) is the client's id for the
first ``MAX_CLIENTS`` distinct clients a process sees and ``other`` after that, so a scan
from many addresses cannot grow the registry without bound.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BREAKER_STATE",
    "MAX_CLIENTS",
    "PRODUCE_SECONDS",
    "RATELIMITED",
    "RECORDS",
    "REQUESTS",
    "client_label",
]

MAX_CLIENTS = 200

REQUESTS = Counter(
    "headrace_gateway_requests",
    "Gateway requests answered, by route template, HTTP status and client.",
    ["route", "status", "client"],
)
RECORDS = Counter(
    "headrace_gateway_records",
    "Records posted to the gateway, by topic and outcome (accepted or rejected).",
    ["topic", "outcome"],
)
PRODUCE_SECONDS = Histogram(
    "headrace_gateway_produce_seconds",
    "From producing a request's records to the broker's acknowledgement of the last one.",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RATELIMITED = Counter(
    "headrace_gateway_ratelimited",
    "Requests refused with 429 by a rate limit, by client and topic.",
    ["client", "topic"],
)
BREAKER_STATE = Gauge(
    "headrace_gateway_breaker_state",
    "The circuit breaker in front of Kafka: 0 closed, 1 half-open, 2 open.",
)

_seen: set[str] = set()
_lock = threading.Lock()


def client_label(client: str) -> str:
    """``client`` as a label value: itself for the first ``MAX_CLIENTS`` clients, then
    ``other``."""
    if client in _seen:
        return client
    with _lock:
        if len(_seen) < MAX_CLIENTS:
            _seen.add(client)
            return client
    return "other"
