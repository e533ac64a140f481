"""Prometheus metrics shared by every headrace process, and the endpoint that serves them.

Names and labels are the same in every process (see the README's metrics table). Labels are
bounded: ``pipeline`` and ``stage`` come from the pipeline file, ``kind`` is one of
``source|stage|sink``, ``outcome`` a fixed word; never a record key or value, never a secret.

``serve(pipeline, kind, name, port)`` starts the HTTP endpoint (port 0 picks a free one) and,
when ``$HEADRACE_PROMETHEUS_TARGETS`` names a folder (the local stack sets it), writes a
file-based service-discovery target there so Prometheus scrapes the process; the file is
removed at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

__all__ = [
    "BATCH_SECONDS",
    "BATCH_SIZE",
    "BYTES",
    "CHECKPOINT_LAG",
    "CONSUMER_LAG",
    "DLQ_RECORDS",
    "E2E_LATENCY",
    "HEALTHY",
    "PROCESS_INFO",
    "RATE_LIMIT_WAIT",
    "RECORDS",
    "RETRIES",
    "STALLED_PARTITIONS",
    "THROTTLES",
    "WINDOW_STATE_KEYS",
    "serve",
]

_STAGE = ["pipeline", "stage", "kind"]
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RECORDS = Counter(
    "headrace_records",
    "Records handled, by outcome (in, out, produced, written, skipped_older, dropped, dlq, ...).",
    [*_STAGE, "outcome"],
)
BYTES = Counter("headrace_bytes", "Payload bytes produced or consumed.", [*_STAGE, "direction"])
DLQ_RECORDS = Counter("headrace_dlq_records", "Records sent to a dead-letter topic.", _STAGE)
BATCH_SECONDS = Histogram(
    "headrace_batch_seconds",
    "Time to process, produce or write one batch.",
    _STAGE,
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "headrace_batch_size",
    "Records per batch.",
    _STAGE,
    buckets=(1, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
CONSUMER_LAG = Gauge(
    "headrace_consumer_lag",
    "Messages behind the high watermark, per topic.",
    [*_STAGE, "topic"],
)
CHECKPOINT_LAG = Gauge(
    "headrace_checkpoint_lag_seconds", "Seconds since the last stored checkpoint.", _STAGE
)
RATE_LIMIT_WAIT = Counter(
    "headrace_rate_limit_wait_seconds", "Seconds spent waiting on a rate limit.", _STAGE
)
WINDOW_STATE_KEYS = Gauge(
    "headrace_window_state_keys", "Open window entries held in state.", _STAGE
)
RETRIES = Counter("headrace_retries", "Retried writes or requests.", [*_STAGE, "reason"])
THROTTLES = Counter("headrace_throttle_events", "Throttling answers from a sink.", _STAGE)
E2E_LATENCY = Histogram(
    "headrace_end_to_end_seconds",
    "Source commit time to visible in the sink.",
    _STAGE,
    buckets=_LATENCY_BUCKETS,
)
STALLED_PARTITIONS = Gauge(
    "headrace_stalled_partitions",
    "Assigned partitions that have lag but did not advance within the stall timeout.",
    _STAGE,
)
HEALTHY = Gauge("headrace_healthy", "1 while the process reports healthy, else 0.", _STAGE)
PROCESS_INFO = Info("headrace_process", "What this process runs.")


def serve(pipeline: str, kind: str, name: str, port: int = 0) -> int:
    """Serve /metrics on 127.0.0.1 (``port``, or a free one if 0 or busy); return the port."""
    PROCESS_INFO.info({"pipeline": pipeline, "kind": kind, "name": name, "pid": str(os.getpid())})
    if port and _busy(port):
        port = 0
    server, _thread = start_http_server(port, addr="127.0.0.1")
    actual = int(server.server_port)
    _register_target(pipeline, kind, name, actual)
    return actual


def free_or(port: int) -> int:
    """``port`` if nothing listens on it on 127.0.0.1, else a free port."""
    if not _busy(port):
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _register_target(pipeline: str, kind: str, name: str, port: int) -> None:
    folder = os.environ.get("HEADRACE_PROMETHEUS_TARGETS")
    if not folder or not Path(folder).is_dir():
        return
    path = Path(folder) / f"{pipeline}-{kind}-{name}-{os.getpid()}.json"
    # Target labels must not collide with metric labels (pipeline, kind): they would be renamed.
    target = [{"targets": [f"127.0.0.1:{port}"], "labels": {"headrace_process": f"{kind}/{name}"}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(target))
    tmp.replace(path)
    atexit.register(path.unlink, missing_ok=True)
