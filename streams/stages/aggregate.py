"""An ``aggregate`` stage: windowed aggregation per input partition, state in a table.

Per partition, a ``WindowAggregator`` (see ``streams.operators.window``) plus the offset of
the last message applied to it. State writes (mirrored into a changelog-backed Faust table by
the runtime, once per batch, not per event):

- ``("w", partition, group, start)`` -> the window's accumulators (None once emitted);
- ``("o", partition)`` -> ``(last applied offset, watermark, upstream positions)``.

After a restart ``restore`` rebuilds the aggregator from those keys; messages at or below the
applied offset (read again because their commit was lost) are skipped, so state never counts a
record twice, and an emitted window, whose state is gone and whose records are then late, is
never emitted again. Messages from a records stage carry their own input position
(``headrace.source``); one at or below the last position applied from the same upstream
partition is a duplicate that stage re-sent after a crash, and is skipped too (exact across
one records stage; a chain of two records stages before an aggregate is at-least-once).
Output rows are keyed by (group_by values, window_start) and carry the
window end as their timestamp.

``tick(wall_ms, caught_up)`` is the idle timer: when a partition is caught up (no lag: the
runner says which) and its event time has not moved for ``idle_ms`` of wall time, its
watermark moves on by the wall time elapsed, so the last windows of a stream that stopped
still close (end + grace later) instead of waiting for a next record. The assumption: once
caught up, event time advances like wall time. A partition with a backlog (after a restart, or
an upstream stage behind) never advances by the clock, so replays stay exact.
"""

from __future__ import annotations

from typing import Any

from headrace.config import Stage
from headrace.errors import PoisonRecord
from schemas import encode_key
from streams.operators.window import WindowAggregator, WindowResult
from streams.stages.base import (
    HEADER_LATENESS,
    HEADER_SOURCE,
    BatchOutput,
    InMessage,
    OutMessage,
    dead_letter,
    decode,
    encode,
)

__all__ = ["AggregateStage"]


class _Partition:
    def __init__(self, agg: WindowAggregator) -> None:
        self.agg = agg
        self.offset = -1
        self.base_wm: int | None = None  # largest event time seen
        self.base_wall: int | None = None  # wall time when base_wm last moved
        self.sources: dict[str, tuple[int, int]] = {}  # upstream topic|partition -> (offset, i)

    def duplicate(self, msg: InMessage) -> bool:
        """Whether ``msg`` is an upstream records stage's replayed output (see HEADER_SOURCE)."""
        raw = msg.header(HEADER_SOURCE)
        if raw is None:
            return False
        topic, partition, offset, index = raw.decode().rsplit("|", 3)
        where, position = f"{topic}|{partition}", (int(offset), int(index))
        seen = self.sources.get(where)
        if seen is not None and position <= seen:
            return True
        self.sources[where] = position
        return False


class AggregateStage:
    """Windowed aggregation; see the module doc. ``wall`` gives wall-clock ms (for tests)."""

    def __init__(self, name: str, stage: Stage, *, idle_ms: int = 5000) -> None:
        if stage.aggregate is None:
            raise ValueError(f"stage {name!r} has no aggregate")
        self.name = name
        self.stage = stage
        self.spec = stage.aggregate
        self.source = stage.from_
        self.idle_ms = idle_ms
        self.parts: dict[int, _Partition] = {}

    def _part(self, partition: int) -> _Partition:
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = _Partition(WindowAggregator(self.spec))
        return part

    def _emit(self, out: BatchOutput, rows: list[WindowResult]) -> None:
        for r in rows:
            key = encode_key([*r.group, r.start_ms])
            out.messages.append(OutMessage(self.stage.to, key, encode(r.value), r.end_ms - 1))
        out.count("out", len(rows))

    def _state(self, out: BatchOutput, partition: int, part: _Partition) -> None:
        touched, removed = part.agg.drain_touched()
        for group, start in touched:
            out.state.append((("w", partition, group, start), part.agg.windows[(group, start)]))
        for group, start in removed:
            out.state.append((("w", partition, group, start), None))
        out.state.append((("o", partition), (part.offset, part.agg.watermark_ms, part.sources)))

    def process(self, partition: int, batch: list[InMessage], wall_ms: int = 0) -> BatchOutput:
        out = BatchOutput()
        part = self._part(partition)
        agg = part.agg
        for msg in batch:
            if msg.offset <= part.offset:
                out.count("skipped_replayed")
                continue
            part.offset = msg.offset
            if part.duplicate(msg):
                out.count("skipped_duplicate")
                continue
            try:
                value = decode(msg)
                if value is None:
                    out.count("dropped")
                    continue
                late = agg.add(value, msg.timestamp_ms)
            except (PoisonRecord, ValueError, TypeError) as exc:
                out.dead.append(dead_letter(self.name, msg, exc))
                continue
            if late is not None:
                out.count("late")
                extra = [(HEADER_LATENESS, str(late.lateness_ms).encode())]
                out.dead.append(dead_letter(self.name, msg, PoisonRecord(late.message()), extra))
        if agg.watermark_ms is not None and agg.watermark_ms != part.base_wm:
            part.base_wm, part.base_wall = agg.watermark_ms, wall_ms
        if self.spec.emit == "updates":
            touched = set(agg._touched)  # running values of the windows this batch changed
            closing = [k for k in touched if agg._closed(k[1], agg.watermark_ms)]
            self._emit(out, agg.running(touched - set(closing)))
        self._emit(out, agg.close_due())
        self._state(out, partition, part)
        out.count("dlq", len(out.dead))
        return out

    def tick(self, wall_ms: int, caught_up: frozenset[int] = frozenset()) -> BatchOutput:
        """Close windows of ``caught_up`` partitions idle for ``idle_ms`` (see the module doc)."""
        out = BatchOutput()
        for partition, part in self.parts.items():
            if part.base_wm is None or part.base_wall is None or partition not in caught_up:
                continue
            idle = wall_ms - part.base_wall
            if idle < self.idle_ms or not part.agg.windows:
                continue
            rows = part.agg.close_due(part.base_wm + idle)
            if rows or part.agg._removed:
                self._emit(out, rows)
                self._state(out, partition, part)
        return out

    def restore(self, partition: int, state: dict[Any, Any]) -> None:
        """Rebuild one partition from its table keys (see the module doc)."""
        part = self.parts[partition] = _Partition(WindowAggregator(self.spec))
        for key, value in state.items():
            if key[0] == "w" and value is not None:
                part.agg.windows[(tuple(key[2]), key[3])] = value
            elif key[0] == "o":
                part.offset, part.agg.watermark_ms, part.sources = value
        part.base_wm = part.agg.watermark_ms

    def state_size(self) -> int:
        return sum(p.agg.state_size for p in self.parts.values())
