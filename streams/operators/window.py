"""Event-time window aggregation: tumbling or hopping windows, grace, late records, having.

One ``WindowAggregator`` holds the open windows of one input partition (a watermark is per
partition: records of one partition arrive in offset order). Contract:

- window ``[start, start + size)`` in epoch milliseconds, aligned to the epoch; hopping
  windows start every ``step``, so a record belongs to ``size / step`` windows;
- the watermark is the largest event time seen (or a later time given to ``close_due``, e.g.
  by an idle timer); a window is *closed* once ``watermark >= end + grace``; it is then
  emitted exactly once by ``close_due`` and its state is dropped;
- a record is *late* when every window it belongs to is closed: ``add`` returns a
  ``LateRecord`` with its lateness (watermark - (last end + grace)) and changes nothing. In a
  hopping window a record that is late for only some of its windows counts in the open ones
  (``partially_late`` says how many it missed);
- lateness is judged against the watermark at the record's turn, so the result does not depend
  on how records are batched;
- ``having`` filters emitted rows; output rows hold the ``group_by`` fields, ``window_start``
  and ``window_end`` (epoch ms, int) and every measure.

State: ``windows`` maps ``(group tuple, start)`` to the accumulators (see ``measures``);
``drain_touched()`` returns the keys changed since the last call and the keys removed, for a
caller that mirrors the state into a Faust table per batch.

Replay after a crash (``offset`` given to ``add``): a caller that persists each window with
the input offset its accumulators already include can give that back in ``floor`` (key ->
offset) when it rebuilds the aggregator, and ``sealed`` for the windows it had already closed
and emitted. Then a replayed record at or below a window's floor is not added to it again,
and a record for a sealed window above its floor is late, whatever the rebuilt watermark
says: a window's emitted value never changes. Each window is exact on its own, so the
windows' entries need not be consistent with each other (see ``streams.stages.aggregate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from headrace.config import Aggregate
from streams.operators.measures import SKIP, MeasureAccumulator

__all__ = ["LateRecord", "WindowAggregator", "WindowKey", "WindowResult", "window_starts"]

WindowKey = tuple[tuple[Any, ...], int]


@dataclass(frozen=True)
class WindowResult:
    """One emitted row: a group's values for one window."""

    group: tuple[Any, ...]
    start_ms: int
    end_ms: int
    value: dict[str, Any]
    final: bool


@dataclass(frozen=True)
class LateRecord:
    """A record that arrived after all its windows closed (to the DLQ)."""

    timestamp_ms: int
    watermark_ms: int
    lateness_ms: int

    def message(self) -> str:
        return (
            f"late record: event time {self.timestamp_ms} is {self.lateness_ms} ms past its "
            f"window's end + grace (watermark {self.watermark_ms}); raise window.grace to "
            "accept it"
        )


def window_starts(ts_ms: int, size_ms: int, step_ms: int) -> list[int]:
    """Starts of every window ``[s, s + size)`` containing ``ts_ms``, s a multiple of step,
    oldest first."""
    last = ts_ms - ts_ms % step_ms
    starts = []
    start = last
    while start > ts_ms - size_ms:
        starts.append(start)
        start -= step_ms
    starts.reverse()
    return starts


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass
class WindowAggregator:
    """Open windows of one partition; not thread-safe (one per partition of one agent)."""

    spec: Aggregate
    windows: dict[WindowKey, list[list[Any]]] = field(default_factory=dict)
    watermark_ms: int | None = None
    partially_late: int = 0
    floor: dict[WindowKey, int] = field(default_factory=dict)
    sealed: set[WindowKey] = field(default_factory=set)

    def __post_init__(self) -> None:
        window = self.spec.window
        self.size_ms = _ms(window.size)
        self.step_ms = _ms(window.step) if window.step is not None else self.size_ms
        self.grace_ms = _ms(window.grace)
        self.group_by = tuple(self.spec.group_by)
        self.measures = [MeasureAccumulator(n, m) for n, m in self.spec.measures.items()]
        self._touched: set[WindowKey] = set()
        self._removed: set[WindowKey] = set()

    def _closed(self, start: int, watermark: int | None) -> bool:
        return watermark is not None and watermark >= start + self.size_ms + self.grace_ms

    def add(
        self, value: dict[str, Any], timestamp_ms: int, offset: int | None = None
    ) -> LateRecord | None:
        """Add one record at its event time. Returns a ``LateRecord`` (nothing changed) when
        all its windows are closed. Raises ``EvaluationError`` (a PoisonRecord) when a measure
        fails on this record; the state is then unchanged. ``offset``: the record's input
        offset, checked against ``floor`` and ``sealed`` (see the module doc)."""
        wm = timestamp_ms if self.watermark_ms is None else max(self.watermark_ms, timestamp_ms)
        size = self.size_ms
        if self.step_ms == size:  # tumbling: one window
            starts = [timestamp_ms - timestamp_ms % size]
        else:
            starts = window_starts(timestamp_ms, size, self.step_ms)
        group = tuple([value.get(f) for f in self.group_by])
        open_starts: list[int] = []
        included = 0  # windows whose persisted state already holds this record
        floors, sealed, closed_before = self.floor, self.sealed, wm - size - self.grace_ms
        for s in starts:
            if s <= closed_before:  # closed: wm >= s + size + grace
                continue
            if floors or sealed:
                key = (group, s)
                floor = floors.get(key)
                if floor is not None and offset is not None and offset <= floor:
                    included += 1
                    continue
                if key in sealed:
                    continue
            open_starts.append(s)
        if not open_starts and not included:
            self.watermark_ms = wm
            lateness = max(0, wm - (starts[-1] + size + self.grace_ms))
            return LateRecord(timestamp_ms, wm, lateness)
        # evaluate every measure first, so a failing record leaves no partial update
        measures = self.measures
        xs = [m.value(value) for m in measures]
        self.watermark_ms = wm
        self.partially_late += len(starts) - len(open_starts) - included
        windows, touched = self.windows, self._touched
        for start in open_starts:
            key = (group, start)
            accs = windows.get(key)
            if accs is None:
                accs = windows[key] = [m.empty() for m in measures]
            for m, acc, x in zip(measures, accs, xs, strict=True):
                if x is not SKIP:
                    m.fold(acc, x)
            touched.add(key)
        return None

    def row(self, key: WindowKey, final: bool) -> WindowResult | None:
        """The output row of an open window, or None when ``having`` rejects it."""
        group, start = key
        accs = self.windows[key]
        value: dict[str, Any] = dict(zip(self.group_by, group, strict=True))
        value["window_start"] = start
        value["window_end"] = start + self.size_ms
        for m, acc in zip(self.measures, accs, strict=True):
            value[m.name] = m.result(acc)
        if self.spec.having is not None and not self.spec.having.test(value):
            return None
        return WindowResult(group, start, start + self.size_ms, value, final)

    def close_due(self, watermark_ms: int | None = None) -> list[WindowResult]:
        """Advance the watermark to ``watermark_ms`` (if later) and emit, once, every window
        now closed, ordered by (end, group); their state is dropped."""
        if watermark_ms is not None and (
            self.watermark_ms is None or watermark_ms > self.watermark_ms
        ):
            self.watermark_ms = watermark_ms
        due = [k for k in self.windows if self._closed(k[1], self.watermark_ms)]
        due.sort(key=lambda k: (k[1], repr(k[0])))
        out = []
        for key in due:
            row = self.row(key, final=True)
            if row is not None:
                out.append(row)
            del self.windows[key]
            self.floor.pop(key, None)
            self._touched.discard(key)
            self._removed.add(key)
        if self.sealed:  # the watermark now judges these on its own
            self.sealed = {k for k in self.sealed if not self._closed(k[1], self.watermark_ms)}
            for k in list(self.floor):
                if k not in self.windows and k not in self.sealed:
                    del self.floor[k]
        return out

    def running(self, keys: set[WindowKey]) -> list[WindowResult]:
        """Running (not final) rows of the given open windows, for ``emit: updates``."""
        rows = [
            self.row(k, final=False)
            for k in sorted(keys, key=lambda k: (k[1], repr(k[0])))
            if k in self.windows
        ]
        return [r for r in rows if r is not None]

    def drain_touched(self) -> tuple[set[WindowKey], set[WindowKey]]:
        """(keys updated, keys removed) since the last call, then forget them."""
        touched, removed = self._touched, self._removed
        self._touched, self._removed = set(), set()
        return touched, removed

    @property
    def state_size(self) -> int:
        return len(self.windows)
