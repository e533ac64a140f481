"""The Prometheus series of one sink, labelled once (pipeline, sink name, kind=sink)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from headrace import metrics as m

__all__ = ["SinkMetrics"]


class SinkMetrics:
    """Counters and histograms of one sink; safe to call from any thread (prometheus_client)."""

    def __init__(self, pipeline: str, sink: str) -> None:
        self._labels = {"pipeline": pipeline, "stage": sink, "kind": "sink"}
        self._batch_seconds = m.BATCH_SECONDS.labels(**self._labels)
        self._batch_size = m.BATCH_SIZE.labels(**self._labels)
        self._dlq = m.DLQ_RECORDS.labels(**self._labels)
        self._throttles = m.THROTTLES.labels(**self._labels)
        self._e2e = m.E2E_LATENCY.labels(**self._labels)
        self._last_commit = time.monotonic()
        m.CHECKPOINT_LAG.labels(**self._labels).set_function(
            lambda: time.monotonic() - self._last_commit
        )

    def records(self, counts: Mapping[str, int]) -> None:
        for outcome, n in counts.items():
            if n:
                m.RECORDS.labels(**self._labels, outcome=outcome).inc(n)

    def batch(self, size: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._batch_seconds.observe(seconds)

    def visible(self, timestamps_ms: Iterable[int | None]) -> None:
        """Records (by message timestamp) whose write just returned: end-to-end latency."""
        m.observe_end_to_end(self._e2e, timestamps_ms)

    def dead_letter(self) -> None:
        self._dlq.inc()
        m.RECORDS.labels(**self._labels, outcome="dlq").inc()

    def retry(self, reason: str) -> None:
        m.RETRIES.labels(**self._labels, reason=reason).inc()

    def throttle(self) -> None:
        self._throttles.inc()

    def committed(self) -> None:
        self._last_commit = time.monotonic()

    def lag(self, topic: str, messages: int) -> None:
        m.CONSUMER_LAG.labels(**self._labels, topic=topic).set(messages)
