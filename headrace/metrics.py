"""Prometheus metrics shared by every headrace process, and the endpoint that serves them.

Names and labels are the same in every process (see docs/operations.md, Metrics). Labels are
bounded: ``pipeline`` and ``stage`` come from the pipeline file, ``kind`` is one of
``source|stage|sink``, ``outcome`` a fixed word; never a record key or value, never a secret.

``serve(pipeline, kind, name, port)`` starts the HTTP endpoint (port 0 picks a free one) and,
when ``$HEADRACE_PROMETHEUS_TARGETS`` names a folder (the local stack sets it), writes a
file-based service-discovery target there so Prometheus scrapes the process; the file is
removed at exit. Target files of processes that died without cleaning up (SIGKILL, OOM)
are pruned whenever a process registers, and by ``headrace status`` and ``stack up``
(``prune_stale_targets``). Before it removes its file at exit, a process waits (bounded by
``metrics.final_scrape``) until Prometheus has scraped its final counts; see
``headrace.metrics_server``.

``headrace_end_to_end_seconds`` is observed by sinks (``observe_end_to_end``): from a
record's Kafka message timestamp, which sources set to the record's event time (its
``timestamp_field``) or, without one, to the moment they produced it, and which record stages
pass on unchanged (aggregates stamp the window end), to the moment the sink's write returned.
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram, Info

from headrace.metrics_server import MetricsServer

log = logging.getLogger(__name__)

__all__ = [
    "BATCH_SECONDS",
    "BATCH_SIZE",
    "BROKER_REACHABLE",
    "BYTES",
    "CDC_LAG_BYTES",
    "CDC_LAG_SECONDS",
    "CDC_SNAPSHOT_ESTIMATE",
    "CDC_SNAPSHOT_ROWS",
    "CHECKPOINT_LAG",
    "CONSUMER_LAG",
    "DLQ_RECORDS",
    "E2E_LATENCY",
    "FAULT_RECOVERIES",
    "FAULT_RECOVERY_SECONDS",
    "HEALTHY",
    "LAST_EXIT",
    "LAST_FAULT_RECOVERY",
    "LAST_FAULT_TIMESTAMP",
    "PROCESS_INFO",
    "PROCESS_RESTARTS",
    "RATE_LIMIT_WAIT",
    "RECORDS",
    "RETRIES",
    "STALLED_PARTITIONS",
    "THROTTLES",
    "WINDOW_STATE_KEYS",
    "observe_end_to_end",
    "prune_stale_targets",
    "serve",
]

_STAGE = ["pipeline", "stage", "kind"]
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: end-to-end spans source polls, stages and sink batching: 10 ms to an hour (a replay or a
#: backlog), finer around the 2 s target, with an edge at 2 s so "share under 2 s" is exact
_E2E_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 10, 30, 60, 300, 900, 3600
)  # fmt: skip

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
#: MySQL CDC sources (``type: mysql_cdc``); ``table`` is a captured table (from the file)
CDC_LAG_SECONDS = Gauge(
    "headrace_cdc_lag_seconds",
    "Seconds from the last binlog event read to now while reading behind; 0 once caught up.",
    _STAGE,
)
CDC_LAG_BYTES = Gauge(
    "headrace_cdc_lag_bytes",
    "Binlog bytes from the position read to the server's head (asked at most every 5 s).",
    _STAGE,
)
CDC_SNAPSHOT_ROWS = Gauge(
    "headrace_cdc_snapshot_rows",
    "Rows of the table read by the snapshot (this process; a resumed snapshot counts on).",
    [*_STAGE, "table"],
)
CDC_SNAPSHOT_ESTIMATE = Gauge(
    "headrace_cdc_snapshot_rows_estimate",
    "The server's row estimate of the table when its snapshot started (information_schema).",
    [*_STAGE, "table"],
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
    "Record's message timestamp (source commit or event time) to its write in the sink.",
    _STAGE,
    buckets=_E2E_BUCKETS,
)
STALLED_PARTITIONS = Gauge(
    "headrace_stalled_partitions",
    "Assigned partitions that have lag but did not advance within the stall timeout.",
    _STAGE,
)
HEALTHY = Gauge("headrace_healthy", "1 while the process reports healthy, else 0.", _STAGE)
PROCESS_INFO = Info("headrace_process", "What this process runs.")

#: per process, ``process`` = ``kind/name`` (the Prometheus target's ``headrace_process``);
#: ``fault`` is one of ``headrace.faults.FAULTS``
_PROCESS = ["pipeline", "process"]
_FAULT = [*_PROCESS, "fault"]
PROCESS_RESTARTS = Gauge(
    "headrace_process_restarts",
    "Times the supervisor restarted this process (HEADRACE_RESTARTS; 0 when unsupervised).",
    _PROCESS,
)
LAST_EXIT = Info(
    "headrace_last_exit",
    "Why the previous run of this process ended (HEADRACE_LAST_EXIT: its exit code and the "
    "last line it wrote), as passed on by the supervisor that restarted it.",
    _PROCESS,
)
FAULT_RECOVERIES = Counter(
    "headrace_fault_recoveries",
    "Faults this process recovered from without a restart.",
    _FAULT,
)
FAULT_RECOVERY_SECONDS = Histogram(
    "headrace_fault_recovery_seconds",
    "From a fault's start to the recovery from it (the first successful call after it).",
    _FAULT,
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
LAST_FAULT_TIMESTAMP = Gauge(
    "headrace_last_fault_timestamp_seconds",
    "When the last fault of this kind that the process recovered from began (Unix seconds).",
    _FAULT,
)
LAST_FAULT_RECOVERY = Gauge(
    "headrace_last_fault_recovery_seconds",
    "How long the recovery from the last fault of this kind took (seconds).",
    _FAULT,
)
BROKER_REACHABLE = Gauge(
    "headrace_broker_reachable",
    "1 while the process's Kafka clients reach the brokers, 0 from a broker error until the "
    "next successful request.",
    _PROCESS,
)


class _Observer(Protocol):
    def observe(self, amount: float) -> None: ...


def observe_end_to_end(
    histogram: _Observer, timestamps_ms: Iterable[int | None], now: float | None = None
) -> int:
    """Observe ``now - timestamp`` (seconds) for each message timestamp; return how many.

    ``histogram`` is a labelled child of ``E2E_LATENCY``; ``now`` (epoch seconds, default the
    wall clock) is when the records became visible. Records without a timestamp are skipped;
    a timestamp ahead of ``now`` (clock skew between hosts) counts as 0 s, never negative.
    """
    now_ms = (time.time() if now is None else now) * 1000.0
    observed = 0
    for ts in timestamps_ms:
        if ts is None:
            continue
        histogram.observe(max(0.0, now_ms - ts) / 1000.0)
        observed += 1
    return observed


def serve(pipeline: str, kind: str, name: str, port: int = 0, final_scrape: float = 15.0) -> int:
    """Serve /metrics on 127.0.0.1 (``port``, or a free one if 0 or busy); return the port.

    At exit the process waits up to ``final_scrape`` seconds for Prometheus to scrape its
    final counts (``headrace.metrics_server``), then removes its target file.
    """
    PROCESS_INFO.info({"pipeline": pipeline, "kind": kind, "name": name, "pid": str(os.getpid())})
    server = _bind(port)
    target = _register_target(pipeline, kind, name, server.port)

    def _at_exit() -> None:
        server.final_scrape(final_scrape, target.parent if target else None)
        if target is not None:
            target.unlink(missing_ok=True)

    atexit.register(_at_exit)
    return server.port


def _bind(port: int) -> MetricsServer:
    """A metrics server on ``port``, or on a free port when that one is taken. Binding is the
    test: processes started together (``headrace run``) can ask for the same port, and a
    check before binding let both see it free and the second one crash."""
    if port:
        try:
            return MetricsServer(port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            log.info("metrics port %d is taken; serving on a free port instead", port)
    return MetricsServer(0)


def targets_folder() -> Path:
    """Where processes register their /metrics endpoints for Prometheus:
    ``$HEADRACE_PROMETHEUS_TARGETS``, else the local stack's folder
    (``$HEADRACE_STACK_DIR``, default ``./.stack``, then ``conf/prometheus/targets``)."""
    folder = os.environ.get("HEADRACE_PROMETHEUS_TARGETS")
    if folder:
        return Path(folder)
    stack = Path(os.environ.get("HEADRACE_STACK_DIR") or ".stack").resolve()
    return stack / "conf" / "prometheus" / "targets"


def _register_target(pipeline: str, kind: str, name: str, port: int) -> Path | None:
    """Write this process's file-discovery target; return its path (None: no folder)."""
    folder = os.environ.get("HEADRACE_PROMETHEUS_TARGETS")
    if not folder or not Path(folder).is_dir():
        return None
    prune_stale_targets(Path(folder))
    pid = os.getpid()
    path = Path(folder) / f"{pipeline}-{kind}-{name}-{pid}.json"
    # Target labels must not collide with metric labels (pipeline, kind): they would be renamed.
    # Labels starting with "__" are dropped by Prometheus after relabelling: the start time
    # only tells a later prune whether the pid still belongs to this process.
    labels = {"headrace_process": f"{kind}/{name}", _STARTED: str(_start_ticks(pid))}
    target = [{"targets": [f"127.0.0.1:{port}"], "labels": labels}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(target))
    tmp.replace(path)
    return path


_STARTED = "__headrace_started"


def prune_stale_targets(folder: Path) -> list[Path]:
    """Delete the target files in ``folder`` whose process is gone; return the deleted paths.

    A file ``<pipeline>-<kind>-<name>-<pid>.json`` is stale when that pid is not running, is
    a zombie, or is another process now (its start time differs from the one the file
    recorded). Files not named that way, and files of live processes, are left alone.
    """
    removed = []
    for path in sorted(folder.glob("*.json")):
        pid_text = path.stem.rsplit("-", 1)[-1]
        if not pid_text.isdigit():
            continue
        if _is_alive(int(pid_text), _recorded_start(path)):
            continue
        try:
            path.unlink()
        except FileNotFoundError:  # pruned by another process at the same time
            continue
        removed.append(path)
    return removed


def _recorded_start(path: Path) -> int | None:
    try:
        groups = json.loads(path.read_text())
        value = groups[0].get("labels", {}).get(_STARTED)
        return int(value) if value is not None else None
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return None


def _is_alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (not Linux): trust the signal check
    state, ticks = stat
    if state == "Z":
        return False
    return started is None or ticks == started


def _start_ticks(pid: int) -> int:
    stat = _proc_stat(pid)
    return stat[1] if stat else 0


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) from /proc/<pid>/stat, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])
