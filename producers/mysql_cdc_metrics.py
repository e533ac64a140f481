"""The MySQL CDC source's own gauges (``headrace.metrics``: ``headrace_cdc_*``): how far the
source is behind the binlog, in seconds and bytes, and how far its snapshot got.

``CDCMetrics(None)`` (a source built without a pipeline, as in unit tests) records nothing.
Bytes behind are the binlog between the position read and the server's head: the sizes of
``SHOW BINARY LOGS`` asked at most every ``every`` seconds, the position moving between asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from headrace import metrics

__all__ = ["CDCMetrics", "bytes_behind"]

Position = tuple[str, int]


def bytes_behind(position: Position, logs: list[tuple[str, int]]) -> int:
    """Binlog bytes after ``position`` in ``logs`` ((file, size) in server order); the whole
    of every file when the position's file is not among them (it was rotated away: counted
    from the first)."""
    names = [name for name, _ in logs]
    if position[0] not in names:
        return sum(size for _, size in logs)
    i = names.index(position[0])
    return max(0, logs[i][1] - position[1]) + sum(size for _, size in logs[i + 1 :])


class CDCMetrics:
    """The gauges of one source; ``labels``: (pipeline, source name, "source")."""

    every = 5.0

    def __init__(
        self, labels: tuple[str, str, str] | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.labels = labels
        self.clock = clock
        self._logs: list[tuple[str, int]] = []
        self._asked = -float("inf")
        self._rows: dict[str, int] = {}

    def snapshot_started(self, table: str, estimate: int) -> None:
        if self.labels is not None:
            metrics.CDC_SNAPSHOT_ESTIMATE.labels(*self.labels, table).set(estimate)
            metrics.CDC_SNAPSHOT_ROWS.labels(*self.labels, table).set(self._rows.get(table, 0))

    def snapshot_rows(self, table: str, rows: int) -> None:
        self._rows[table] = self._rows.get(table, 0) + rows
        if self.labels is not None:
            metrics.CDC_SNAPSHOT_ROWS.labels(*self.labels, table).set(self._rows[table])

    def binlog_sizes(self, ask: Callable[[], list[tuple[str, int]]]) -> None:
        """Refresh the server's binlog sizes with ``ask`` unless asked within ``every`` s."""
        now = time.monotonic()
        if self.labels is None or now - self._asked < self.every:
            return
        self._asked = now
        self._logs = ask()

    def read(self, position: Position, event_seconds: float) -> None:
        """The source read up to ``position``, an event written at ``event_seconds``."""
        if self.labels is None:
            return
        metrics.CDC_LAG_SECONDS.labels(*self.labels).set(max(0.0, self.clock() - event_seconds))
        if self._logs:
            metrics.CDC_LAG_BYTES.labels(*self.labels).set(bytes_behind(position, self._logs))

    def caught_up(self) -> None:
        """The source read the binlog to its end."""
        if self.labels is not None:
            metrics.CDC_LAG_SECONDS.labels(*self.labels).set(0)
            metrics.CDC_LAG_BYTES.labels(*self.labels).set(0)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"CDCMetrics({self.labels!r})"
