"""The loop that runs one stage in a Faust worker: take a batch, process, produce, ack.

Per batch (one asyncio task per stage, so concurrency is 1 by construction):

1. take up to ``batch_size`` events from the stage's ``BatchTopic`` (or what came within
   ``within`` seconds);
2. per input partition, rebuild the processor's state from the table the first time the
   partition is seen since assignment (the table is recovered from its changelog before
   Faust hands out events), then ``process`` the partition's messages in offset order;
3. sleep ``wait_s`` if the rate limit says so (backpressure), produce outputs, dead letters and
   overflow with confluent-kafka, and write the state changes to the table and its changelog;
4. run the processor's timer (``tick``: idle windows close even with no input);
5. wait until the broker acknowledged every output and changelog message (acks=all), then
   ack the events: Faust commits only acked offsets. A failed delivery raises, so the worker
   stops without committing and a restart reprocesses the batch (at-least-once; the state
   skips offsets it already applied).

Known gap: outputs are flushed before the changelog, so a crash between the two re-emits
the batch's closed windows after the restart (identical key and value; never lost). Closing
it needs a pending mark in the changelog before producing, resolved on restore by reading the
output topic from the offsets recorded in the mark.

State keys go to the table as JSON text, values as base64 pickle text (the changelog is written
and read only by this app: never point it at a topic others write). Faust's serializers are not
used for state: on recovery Faust decoded changelog values as UTF-8 text whatever the table's
schema said, so Decimals came back as text and binary values failed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import pickle
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import faust
import orjson
from confluent_kafka import KafkaError, Producer
from faust.types import TP, EventT

from headrace import metrics
from streams.batch_topic import BatchTopic
from streams.stages.base import BatchOutput, InMessage, OutMessage, StageProcessor

__all__ = ["StageRunner"]

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    """The broker refused an output message; the batch is not acked."""


class StageRunner:
    """Runs one stage; see the module doc. ``labels``: (pipeline, stage) for metrics."""

    def __init__(
        self,
        *,
        app: faust.App,
        processor: StageProcessor,
        topic: BatchTopic,
        table: Any | None,
        producer: Producer,
        labels: tuple[str, str],
        within: float = 0.2,
    ) -> None:
        self.app = app
        self.processor = processor
        self.topic = topic
        self.table = table
        self.producer = producer
        self.labels = (*labels, "stage")
        self.within = within
        self.restored: set[int] = set()
        self.position: dict[TP, int] = {}  # last offset processed per partition
        self.progress_at: dict[TP, float] = {}
        self._errors: list[str] = []
        self.batches = 0

    # -- rebalance ------------------------------------------------------------------------

    def on_revoked(self, revoked: Iterable[TP]) -> None:
        """Forget partitions we no longer own (their state is rebuilt if they come back)."""
        for tp in revoked:
            if tp.topic == self.processor.source:
                self.restored.discard(tp.partition)
                self.position.pop(tp, None)
                self.progress_at.pop(tp, None)

    def _restore(self, partition: int) -> None:
        state: dict[Any, Any] = {}
        if self.table is not None:
            for raw_key, raw_value in list(self.table.data.items()):
                key = state_key(raw_key)
                if len(key) > 1 and key[1] == partition and raw_value is not None:
                    state[key] = pickle.loads(base64.b64decode(raw_value))  # noqa: S301 (our own state)
        self.processor.restore(partition, state)
        self.restored.add(partition)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """The stage loop; runs until the app stops (task cancelled between batches)."""
        buffer = self.topic.buffer
        while True:
            events = await buffer.take(self.within)
            await self.handle(events)

    async def handle(self, events: list[EventT[Any]]) -> None:
        """Process, produce, wait for acknowledgement, then ack ``events``."""
        started = time.perf_counter()
        wall_ms = int(time.time() * 1000)
        by_partition: dict[int, list[InMessage]] = defaultdict(list)
        for ev in events:
            m = ev.message
            by_partition[m.partition].append(
                InMessage(
                    m.topic,
                    m.partition,
                    m.offset,
                    m.key,
                    m.value,
                    round(m.timestamp * 1000),
                    _headers(m.headers),
                )
            )
        outputs: list[BatchOutput] = []
        for partition, batch in by_partition.items():
            if partition not in self.restored:
                self._restore(partition)
            out = self.processor.process(partition, batch, wall_ms)
            if out.wait_s > 0:
                metrics.RATE_LIMIT_WAIT.labels(*self.labels).inc(out.wait_s)
                await asyncio.sleep(out.wait_s)
            self._write(out)
            outputs.append(out)
        tick = self.processor.tick(wall_ms, self._caught_up())
        self._write(tick)
        outputs.append(tick)
        if any(o.messages or o.dead or o.state for o in outputs):
            await self._flush()
        for ev in events:
            ev.ack()
        now = time.monotonic()
        for partition, batch in by_partition.items():
            tp = TP(self.processor.source, partition)
            self.position[tp] = batch[-1].offset
            self.progress_at[tp] = now
        self._count(len(events), outputs, time.perf_counter() - started)
        self.batches += 1

    def _caught_up(self) -> frozenset[int]:
        """Input partitions whose last processed offset is the last one in the log."""
        consumer = self.app.consumer
        done = set()
        for tp, position in self.position.items():
            try:
                highwater = int(consumer.highwater(tp))
            except Exception:  # no fetch response yet: not known to be caught up
                highwater = -1
            if highwater >= 0 and position >= highwater - 1:
                done.add(tp.partition)
        return frozenset(done)

    def _write(self, out: BatchOutput) -> None:
        for msg in out.messages:
            self._produce(msg)
        for msg in out.dead:
            self._produce(msg)
        if self.table is None:
            return
        data = self.table.data
        for key, value in out.state:
            raw_key = orjson.dumps(key, default=str).decode()
            raw_value = (
                None
                if value is None
                else base64.b64encode(pickle.dumps(value, protocol=5)).decode()
            )
            self.table.send_changelog(key[1], raw_key, raw_value)
            if raw_value is None:
                data.pop(raw_key, None)
            else:
                data[raw_key] = raw_value

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def _produce(self, msg: OutMessage) -> None:
        kwargs: dict[str, Any] = {"on_delivery": self._on_delivery}
        if msg.timestamp_ms is not None:
            kwargs["timestamp"] = msg.timestamp_ms
        if msg.headers:
            kwargs["headers"] = msg.headers
        if msg.partition is not None:
            kwargs["partition"] = msg.partition
        while True:
            try:
                self.producer.produce(msg.topic, msg.value, msg.key, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.05)

    async def _flush(self) -> None:
        remaining = await asyncio.to_thread(self.producer.flush, 60.0)
        await self.app.producer.flush()
        if remaining or self._errors:
            errors, self._errors = self._errors[:5], []
            raise DeliveryFailed(
                f"stage {self.labels[1]!r}: {remaining} output messages not acknowledged "
                f"within 60 s, delivery errors: {errors or 'none'}; the batch is not committed "
                "and will be reprocessed after a restart"
            )

    def _count(self, n_in: int, outputs: list[BatchOutput], seconds: float) -> None:
        labels = self.labels
        if n_in:
            metrics.RECORDS.labels(*labels, "in").inc(n_in)
            metrics.BATCH_SIZE.labels(*labels).observe(n_in)
            metrics.BATCH_SECONDS.labels(*labels).observe(seconds)
        for out in outputs:
            for outcome, n in out.counts.items():
                if n:
                    metrics.RECORDS.labels(*labels, outcome).inc(n)
            if out.dead:
                metrics.DLQ_RECORDS.labels(*labels).inc(len(out.dead))
        metrics.WINDOW_STATE_KEYS.labels(*labels).set(self.processor.state_size())


def state_key(raw: str | bytes) -> tuple[Any, ...]:
    """A state key as processors know it, from its table bytes (JSON array; lists -> tuples)."""
    return tuple(tuple(k) if isinstance(k, list) else k for k in orjson.loads(raw))


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    if not raw:
        return ()
    items = raw.items() if isinstance(raw, dict) else raw
    return tuple((str(k), bytes(v) if v is not None else b"") for k, v in items)
