"""An ``aggregate`` stage: windowed aggregation per input partition, state in a table.

Per partition, a ``WindowAggregator`` (see ``streams.operators.window``) plus the offset of
the last message applied to it. State writes (mirrored into a changelog-backed table by the
runtime, once per batch, not per event):

- ``("w", partition, group, start)`` -> ``("open", accumulators, offset)`` for an open window,
  ``("closed", output, offset)`` once it is closed, ``output`` being the exact emitted message
  and where it goes, ``(key, value, timestamp, output partition, start)`` (None when
  ``having`` rejected it), ``start`` an offset of the output partition at or below the one the
  message lands at (``OutputLog.start``); ``offset`` is the last input offset of the batch that
  wrote the entry, so the entry holds every record up to it;
- ``("o", partition)`` -> ``(last applied offset, watermark, upstream positions)``.

Why this shape (crash safety). One batch's state is several changelog messages, and a kill -9
can persist any prefix of them (they are ordered within the partition's changelog partition,
``("o", partition)`` last). So no entry may depend on another being there too:

- each window entry carries the offset it is complete up to: ``restore`` gives it back to the
  aggregator as the window's *floor*, and a replayed record at or below it is not added again
  (the ``("o")`` marker can be older than some windows; the replay from it recomputes the
  watermark and the upstream positions exactly as the first run did);
- a closed window is never deleted at once: it becomes a ``closed`` entry holding the output
  message itself. The runtime persists the state *before* producing any output of the batch
  (``streams.runner``), so whatever was emitted has its ``closed`` entry in the changelog.
  ``restore`` turns ``closed`` entries into *sealed* windows: records for them above the floor
  are late (DLQ). Their stored outputs may or may not have reached the broker before the
  crash, so ``restore`` reads each output partition concerned from the smallest stored
  ``start`` to its end (``OutputLog.present``) and produces again, with the next batch and
  byte-identical, only the outputs whose key and value bytes it does not find there. Once the
  outputs are acknowledged the stage asks (``BatchOutput.after``) for the entries to be
  tombstoned; by then the ``("o")`` marker of the closing batch is in the changelog before the
  tombstone, so a replay sees the window closed by the watermark.

Hence a window is emitted exactly once across kill -9 restarts: never with two values, never
twice, never lost. Outputs carry their partition explicitly (``OutputLog.partition``: Kafka's
murmur2, what our producers compute too), so they land where the entry says. The read-back is
bounded: only ``closed`` entries of the batch in flight at the crash survive (the others
were tombstoned), and the read covers what was written to that partition (by any worker)
since this worker's previous output there, or since it first closed a window. Left: a
*zombie* (a worker that is not dead but lost its partitions) appending after the read (a
kill -9 cannot be one); an entry written by an older version (no partition and start) is
produced again (at least once), and so is an output that retention deleted before the read;
with ``emit: updates``, a final value byte-identical to a running value of the same batch
counts as out (the key's latest value is right either way).

Messages from a records stage carry their own input position (``headrace.source``); one at
or below the last position applied from the same upstream partition is a duplicate that stage
re-sent after a crash, and is skipped (exact across one records stage; a chain of two records
stages before an aggregate is at-least-once). Output rows are keyed by (group_by values,
window_start) and carry the window end as their timestamp.

``tick(wall_ms, caught_up)`` is the idle timer: when a partition is caught up (no lag: the
runner says which) and no record has come to it for ``idle_ms`` of wall time, its watermark
moves on by the wall time elapsed since its last record, so the last windows of a stream that
stopped still close (end + grace later) instead of waiting for a next record. Any record counts
(one below the watermark, a replay skipped after a restart): measuring from when the
watermark last moved instead closed windows early while out-of-order or second-half records
were still arriving after a restart, and never started for a restored partition that got
only replays. The assumption: once caught up and quiet, event time advances like wall time.
A partition with a backlog (after a restart, or an upstream stage behind) never advances by
the clock, so replays stay exact.

That assumption is wrong for data older than wall time (a backfill) whose source stalls (a
database paused, a source restarting): the open window would close before its last records
come, and those would be late. ``idle_gate`` lets the timer run only once the input is known
to be complete: ``headrace run --until-idle`` opens it when every source finished and every
lag is 0 (``--input-done-file``). Without a gate (long-running workers) the timer always runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from headrace.config import Stage
from headrace.errors import PoisonRecord
from schemas import encode_key
from streams.operators.window import WindowAggregator, WindowKey, WindowResult
from streams.stages.base import (
    HEADER_LATENESS,
    BatchOutput,
    InMessage,
    OutMessage,
    OutputLog,
    StageDefaults,
    StateWrite,
    dead_letter,
    source_position,
    upstream_source,
)

__all__ = ["AggregateStage"]


class _Partition:
    def __init__(self, agg: WindowAggregator) -> None:
        self.agg = agg
        self.offset = -1
        self.base_wm: int | None = None  # largest event time seen
        self.base_wall: int | None = None  # wall time of the last batch with records
        self.sources: dict[bytes, tuple[int, ...]] = {}  # HEADER_SOURCE's where -> (offset, i...)
        self.reemit: list[OutMessage] = []  # closed windows' outputs found by restore
        self.unseal: list[StateWrite] = []  # and their entries' tombstones
        self.found = 0  # closed windows' outputs restore found in the output topic

    def duplicate(self, msg: InMessage) -> bool:
        """Whether ``msg`` is an upstream records stage's replayed output (see HEADER_SOURCE)."""
        upstream = upstream_source(msg)
        if upstream is None:
            return False
        where, offset, index = upstream
        position = source_position(index, offset)
        seen = self.sources.get(where)
        if seen is not None and position <= seen:
            return True
        self.sources[where] = position
        return False


class AggregateStage(StageDefaults):
    """Windowed aggregation; see the module doc. ``output``: the stage's output topic, to
    place outputs and read them back on restore (``streams.output_log.KafkaOutputLog``)."""

    def __init__(
        self,
        name: str,
        stage: Stage,
        *,
        output: OutputLog,
        idle_ms: int = 5000,
        idle_gate: Callable[[], bool] | None = None,
    ) -> None:
        if stage.aggregate is None:
            raise ValueError(f"stage {name!r} has no aggregate")
        self.name = name
        self.stage = stage
        self.spec = stage.aggregate
        self.source = stage.from_
        self.idle_ms = idle_ms
        #: the idle timer runs only while this says True (None: always); see the module doc
        self.idle_gate = idle_gate
        self.output = output
        self.parts: dict[int, _Partition] = {}

    def _part(self, partition: int) -> _Partition:
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = _Partition(WindowAggregator(self.spec))
        return part

    def _emit(self, out: BatchOutput, rows: list[WindowResult]) -> dict[WindowKey, OutMessage]:
        emitted = {}
        for r in rows:
            key = encode_key([*r.group, r.start_ms])
            where = self.output.partition(key)
            msg = OutMessage(
                self.stage.to, key, self.codec.encode(r.value), r.end_ms - 1, partition=where
            )
            out.messages.append(msg)
            emitted[(r.group, r.start_ms)] = msg
        out.count("out", len(rows))
        return emitted

    def _state(
        self,
        out: BatchOutput,
        partition: int,
        part: _Partition,
        closed: dict[WindowKey, OutMessage],
    ) -> None:
        """The batch's state writes (see the module doc); ``closed``: this batch's final
        outputs by window."""
        touched, removed = part.agg.drain_touched()
        windows = part.agg.windows
        for group, start in touched:
            entry = ("open", windows[(group, start)], part.offset)
            out.state.append((("w", partition, group, start), entry))
        for wkey in sorted(removed, key=repr):
            msg = closed.get(wkey)
            stored = None
            if msg is not None and msg.partition is not None:
                start = self.output.start(msg.partition)
                stored = (msg.key, msg.value, msg.timestamp_ms, msg.partition, start)
            key = ("w", partition, wkey[0], wkey[1])
            out.state.append((key, ("closed", stored, part.offset)))
            out.after.append((key, None))
        out.state.append((("o", partition), (part.offset, part.agg.watermark_ms, part.sources)))

    def process(self, partition: int, batch: list[InMessage], wall_ms: int = 0) -> BatchOutput:
        out = BatchOutput()
        part = self._part(partition)
        agg = part.agg
        if part.reemit or part.unseal or part.found:
            out.messages.extend(part.reemit)
            out.after.extend(part.unseal)
            out.count("reemitted", len(part.reemit))
            out.count("already_out", part.found)
            part.reemit, part.unseal, part.found = [], [], 0
        for msg in batch:
            if msg.offset <= part.offset:
                out.count("skipped_replayed")
                continue
            part.offset = msg.offset
            if part.duplicate(msg):
                out.count("skipped_duplicate")
                continue
            try:
                value = self.decode(msg)
                if value is None:
                    out.count("dropped")
                    continue
                late = agg.add(value, msg.timestamp_ms, msg.offset)
            except (PoisonRecord, ValueError, TypeError) as exc:
                out.dead.append(dead_letter(self.name, msg, exc, topic=self.stage.from_))
                continue
            if late is not None:
                out.count("late")
                extra = [(HEADER_LATENESS, str(late.lateness_ms).encode())]
                problem = PoisonRecord(late.message())
                out.dead.append(dead_letter(self.name, msg, problem, extra, topic=self.stage.from_))
        part.base_wm = agg.watermark_ms
        part.base_wall = wall_ms  # a record came: not idle (see the module doc)
        if self.spec.emit == "updates":
            touched = set(agg._touched)  # running values of the windows this batch changed
            closing = [k for k in touched if agg._closed(k[1], agg.watermark_ms)]
            self._emit(out, agg.running(touched - set(closing)))
        closed = self._emit(out, agg.close_due())
        self._state(out, partition, part, closed)
        out.count("dlq", len(out.dead))
        return out

    def tick(self, wall_ms: int, caught_up: frozenset[int] = frozenset()) -> BatchOutput:
        """Close windows of ``caught_up`` partitions idle for ``idle_ms`` (see the module doc)."""
        out = BatchOutput()
        if self.idle_gate is not None and not self.idle_gate():
            return out  # the input is not known to be complete: windows close by event time
        for partition, part in self.parts.items():
            if part.base_wm is None or part.base_wall is None or partition not in caught_up:
                continue
            idle = wall_ms - part.base_wall
            if idle < self.idle_ms or not part.agg.windows:
                continue
            rows = part.agg.close_due(part.base_wm + idle)
            if rows or part.agg._removed:
                self._state(out, partition, part, self._emit(out, rows))
        return out

    def restore(self, partition: int, state: dict[Any, Any]) -> None:
        """Rebuild one partition from its table keys (see the module doc)."""
        part = self.parts[partition] = _Partition(WindowAggregator(self.spec))
        agg = part.agg
        stored: list[tuple[OutMessage, int | None]] = []
        for key, value in sorted(state.items(), key=lambda kv: repr(kv[0])):
            if key[0] == "w" and value is not None:
                wkey = (tuple(key[2]), key[3])
                kind, data, offset = value
                agg.floor[wkey] = offset
                if kind == "open":
                    agg.windows[wkey] = data
                else:
                    agg.sealed.add(wkey)
                    if data is not None:
                        key_, value_, ts, *where = data  # (partition, start); () if older
                        partition_ = where[0] if where else None
                        msg = OutMessage(self.stage.to, key_, value_, ts, partition=partition_)
                        stored.append((msg, where[1] if where else None))
                    part.unseal.append((("w", partition, *wkey), None))
            elif key[0] == "o":
                part.offset, agg.watermark_ms, sources = value
                # keys are bytes since 2026-12; state written before holds them as text
                part.sources = {
                    k.encode() if isinstance(k, str) else k: v for k, v in sources.items()
                }
        part.base_wm = agg.watermark_ms
        part.reemit = self._unsent(stored)
        part.found = len(stored) - len(part.reemit)

    def _unsent(self, stored: list[tuple[OutMessage, int | None]]) -> list[OutMessage]:
        """The stored outputs not found in the output topic from their ``start`` on (one read
        per output partition, from the smallest start); without a start: all of them."""
        starts: dict[int, int] = {}
        for msg, start in stored:
            if msg.partition is not None and start is not None:
                starts[msg.partition] = min(start, starts.get(msg.partition, start))
        found = {p: self.output.present(p, start) for p, start in sorted(starts.items())}
        return [
            msg
            for msg, start in stored
            if start is None
            or msg.partition is None
            or (msg.key, msg.value) not in found[msg.partition]
        ]

    def batch_limit(self) -> int | None:
        return None

    def applied_offset(self, partition: int) -> int:
        """The last input offset applied to ``partition``'s state (-1: none)."""
        part = self.parts.get(partition)
        return part.offset if part is not None else -1

    def state_size(self) -> int:
        return sum(p.agg.state_size for p in self.parts.values())
