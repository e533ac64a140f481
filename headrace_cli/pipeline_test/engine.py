"""The simulated worker: the stage code the worker runs, over in-memory topics, on a
simulated clock.

Wiring is ``streams.app.build_worker``'s, for the stages a case names: a ``records`` stage is
one ``RecordsStage`` (its lookup fed from its ``table_from`` topic, its rate limiter on the
simulated clock); an ``aggregate`` is an ``AggregateStage``, after a ``RepartitionStage`` by
``group_by`` when ``headrace.config.keys.needs_repartition`` says the worker adds one
(internal topic ``headrace-<pipeline>-<stage>-by-group``); a ``rank`` is a
``RepartitionStage`` by ``partition_by`` (``-by-partition``) then a ``RankStage`` whose key
fields are the worker's (``key_fields``). Each is a loop that does what
``streams.runner.StageRunner`` does with a batch: restore a partition the first time it sees
it (from empty state), ``process`` each partition's messages in offset order with the wall
time, run the timer (``tick``) with the partitions it has read to the end, and produce the
outputs and dead letters, after the rate limit's wait (``BatchOutput.wait_s``: the loop takes
nothing else meanwhile). State writes are not persisted: nothing crashes here.

Time: the simulated wall clock starts at 0 (the start of the case) and only moves from one
event to the next: a record arriving (its ``at``), a delayed batch going out, the idle timer
of an aggregate coming due (the first moment its ``tick`` closes a window: the worker ticks
every 0.2 s, so it closes that window at most 0.2 s later), up to ``horizon``; work left
after the horizon (delayed batches) still runs. At one moment, lookup tables load first, then
each loop in wiring order takes what has landed in its input (in landing order, at most its
``batch_limit`` or ``batch_size``), until none has anything left; then the timers run.
Deterministic: the same case gives the same messages, in the same order, every time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from headrace.config import Pipeline, Stage
from headrace.config.keys import key_fields, needs_repartition
from headrace_cli.pipeline_test.topics import Arrival, Landed, Topics
from headrace_cli.pipeline_test.window_timer import next_due
from streams.output_log import partition_for
from streams.stages.aggregate import AggregateStage
from streams.stages.base import BatchOutput, InMessage, OutMessage, StageProcessor
from streams.stages.rank import RankStage
from streams.stages.records import RecordsStage
from streams.stages.repartition import RepartitionStage

__all__ = ["BATCH_SIZE", "LookupTable", "Loop", "RateBatch", "Simulation"]

BATCH_SIZE = 5000
"""Most records a loop takes at once (the worker's ``--batch-size`` default)."""


@dataclass(frozen=True)
class RateBatch:
    """What a rate-limited stage's limiter decided for one batch, at simulated ``decided_ms``:
    ``sent`` outputs left ``wait_ms`` later, ``shed`` went to the overflow topic at once."""

    stage: str
    decided_ms: int
    wait_ms: int
    sent: int
    shed: int


class LookupTable:
    """A lookup stage's table: the latest value per key of ``topic`` (a tombstone deletes,
    a message without a key is skipped), as ``streams.lookup.LookupRunner`` keeps it."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.read: dict[int, int] = {}
        self.data: dict[str, bytes] = {}

    def load(self, topics: Topics) -> None:
        """Apply what landed in the topic since the last load."""
        for p, log in enumerate(topics.log(self.topic)):
            for landed in log[self.read.get(p, 0) :]:
                msg = landed.msg
                if msg.key is None:
                    continue
                key = msg.key.decode(errors="replace")
                if msg.value is None:
                    self.data.pop(key, None)
                else:
                    self.data[key] = msg.value
            self.read[p] = len(log)

    def get(self, key: bytes) -> dict[str, Any] | None:
        """The value for ``key`` (``LookupRunner.get``)."""
        raw = self.data.get(key.decode(errors="replace"))
        if raw is None:
            return None
        value = orjson.loads(raw)
        return value if isinstance(value, dict) else None


class _OutputLog:
    """An aggregate's output topic (``streams.stages.base.OutputLog``) over ``Topics``."""

    def __init__(self, topics: Topics, topic: str) -> None:
        self.topics = topics
        self.topic = topic

    def partition(self, key: bytes) -> int:
        return partition_for(key, self.topics.partitions)

    def start(self, partition: int) -> int:
        return len(self.topics.log(self.topic)[partition])

    def present(self, partition: int, start: int) -> set[tuple[bytes | None, bytes | None]]:
        log = self.topics.log(self.topic)[partition]
        return {(m.msg.key, m.msg.value) for m in log[start:]}


@dataclass
class Loop:
    """One stage loop: its processor, the topic it reads, how far it read each partition,
    the partitions it restored, and until when it is sending a delayed batch."""

    stage: str
    processor: StageProcessor
    source: str
    limited: bool = False
    read: dict[int, int] = field(default_factory=dict)
    restored: set[int] = field(default_factory=set)
    busy_until: int = 0


class Simulation:
    """The loops of ``stages`` (names in ``pipeline``) over topics of ``partitions``; see the
    module doc. ``idle_ms``: the worker's ``--idle-ms``."""

    def __init__(
        self,
        pipeline: Pipeline,
        stages: Sequence[str],
        *,
        partitions: int,
        idle_ms: int = 5000,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.pipeline = pipeline
        self.topics = Topics(partitions)
        self.idle_ms = idle_ms
        self.batch_size = batch_size
        self.now = 0
        self.loops: list[Loop] = []
        self.lookups: list[LookupTable] = []
        self.rate: list[RateBatch] = []
        self._pending: list[tuple[int, int, list[OutMessage]]] = []
        self._sends = 0
        keys = key_fields(pipeline)
        app_id = f"headrace-{pipeline.name}"
        for name, stage in pipeline.stages.items():
            if name in stages:
                self._wire(name, stage, keys, app_id)

    def clock(self) -> float:
        """The simulated monotonic clock in seconds (the rate limiters')."""
        return self.now / 1000

    def _wire(self, name: str, stage: Stage, keys: Mapping[str, Any], app_id: str) -> None:
        n = self.topics.partitions
        if stage.kind == "records":
            get: Callable[[bytes], Mapping[str, Any] | None] | None = None
            if stage.lookup is not None:
                table = LookupTable(stage.lookup.table_from)
                self.lookups.append(table)
                get = table.get
            processor = RecordsStage(
                name, stage, schemas_dir=self.pipeline.schema_dir, lookup=get, clock=self.clock
            )
            self.loops.append(Loop(name, processor, stage.from_, stage.rate_limit is not None))
            return
        purpose: Literal["rank", "aggregate"]
        if stage.kind == "aggregate":
            source = stage.from_
            if needs_repartition(stage, keys.get(stage.from_)):
                source = f"{app_id}-{name}-by-group"
                part = RepartitionStage(
                    name, stage, target=source, partitions=n, purpose="aggregate"
                )
                self.loops.append(Loop(name, part, stage.from_))
            agg = AggregateStage(
                name, stage, output=_OutputLog(self.topics, stage.to), idle_ms=self.idle_ms
            )
            agg.source = source
            self.loops.append(Loop(name, agg, source))
            return
        purpose = "rank"
        source = f"{app_id}-{name}-by-partition"
        part = RepartitionStage(name, stage, target=source, partitions=n, purpose=purpose)
        self.loops.append(Loop(name, part, stage.from_))
        rank = RankStage(name, stage, key_fields=keys.get(stage.to))
        rank.source = source
        self.loops.append(Loop(name, rank, source))

    # -- running ----------------------------------------------------------------------------

    def run(self, arrivals: Sequence[Arrival], horizon_ms: int) -> None:
        """Feed ``arrivals`` at their times and run until nothing is left to do and no timer
        is due by ``horizon_ms`` (see the module doc)."""
        todo = sorted(arrivals, key=lambda a: a.at_ms)
        i = 0
        while True:
            while i < len(todo) and todo[i].at_ms <= self.now:
                self.topics.arrive(todo[i])
                i += 1
            while self._pending and self._pending[0][0] <= self.now:
                _, _, messages = heapq.heappop(self._pending)
                for msg in messages:
                    self.topics.land(msg, self.now)
            self._drain()
            upcoming = [todo[i].at_ms] if i < len(todo) else []
            if self._pending:
                upcoming.append(self._pending[0][0])
            upcoming += [
                loop.busy_until
                for loop in self.loops
                if loop.busy_until > self.now and self._unread(loop)
            ]
            due = self._timer_due()
            if due is not None and due <= horizon_ms:
                upcoming.append(due)
            if not upcoming:
                return
            self.now = min(upcoming)

    def _drain(self) -> None:
        """Run every loop at ``now`` until none has input left, the timers included."""
        while True:
            moved = False
            for table in self.lookups:
                table.load(self.topics)
            for loop in self.loops:
                if loop.busy_until > self.now:
                    continue
                batch = self._take(loop)
                if batch:
                    moved = True
                    self._process(loop, batch)
            for loop in self.loops:
                if loop.busy_until > self.now:
                    continue
                out = loop.processor.tick(self.now, self._caught_up(loop))
                if out.messages or out.dead:
                    moved = True
                    self._emit(loop, out)
            if not moved:
                return

    def _take(self, loop: Loop) -> dict[int, list[InMessage]]:
        """The loop's next batch: what landed in its input since it last read, in landing
        order, at most ``batch_limit()`` (else ``batch_size``) messages, by partition."""
        limit = loop.processor.batch_limit() or self.batch_size
        unread: list[Landed] = []
        for p, log in enumerate(self.topics.log(loop.source)):
            unread.extend(log[loop.read.get(p, 0) :])
        unread.sort(key=lambda m: m.seq)
        batch: dict[int, list[InMessage]] = {}
        for landed in unread[:limit]:
            msg = landed.msg
            batch.setdefault(msg.partition, []).append(msg)
            loop.read[msg.partition] = msg.offset + 1
        return batch

    def _process(self, loop: Loop, batch: dict[int, list[InMessage]]) -> None:
        for partition in sorted(batch):
            if partition not in loop.restored:
                loop.processor.restore(partition, {})
                loop.restored.add(partition)
            out = loop.processor.process(partition, batch[partition], self.now)
            self._emit(loop, out)
        tick = loop.processor.tick(self.now, self._caught_up(loop))
        self._emit(loop, tick)

    def _emit(self, loop: Loop, out: BatchOutput) -> None:
        """Produce ``out``: at once, or (rate limit) ``wait_s`` later, the loop busy till then."""
        wait_ms = max(0, round(out.wait_s * 1000))
        if loop.limited and "shed" in out.counts:
            shed = out.counts["shed"]
            sent = len(out.messages) - shed
            self.rate.append(RateBatch(loop.stage, self.now, wait_ms, sent, shed))
        messages = out.messages + out.dead
        if wait_ms:
            self._sends += 1
            heapq.heappush(self._pending, (self.now + wait_ms, self._sends, messages))
            loop.busy_until = max(loop.busy_until, self.now + wait_ms)
            return
        for msg in messages:
            self.topics.land(msg, self.now)

    def _unread(self, loop: Loop) -> bool:
        return any(
            loop.read.get(p, 0) < len(log) for p, log in enumerate(self.topics.log(loop.source))
        )

    def _caught_up(self, loop: Loop) -> frozenset[int]:
        """The partitions the loop has read to their end (``StageRunner._caught_up``)."""
        logs = self.topics.log(loop.source)
        return frozenset(p for p, n in loop.read.items() if n >= len(logs[p]))

    def _timer_due(self) -> int | None:
        """The next moment after ``now`` an idle timer closes a window, if any."""
        dues = [
            next_due(loop.processor, self._caught_up(loop))
            for loop in self.loops
            if loop.busy_until <= self.now
        ]
        later = [d for d in dues if d is not None and d > self.now]
        return min(later) if later else None
