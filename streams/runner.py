"""The loop that runs one stage in a Faust worker: take a batch, process, produce, ack.

Per batch (one asyncio task per stage, so concurrency is 1 by construction; a stage without
state processes the next batch during step 4's wait, see ``StageRunner.run``):

1. take the records waiting in the stage's ``BatchBuffer`` (filled by
   ``streams.consumer.BatchConsumer`` a fetched batch at a time; at least ``batch_size``, or
   what came within ``within`` seconds);
2. per input partition, rebuild the processor's state from the table the first time the
   partition is seen since assignment (the table is recovered from its changelog before
   Faust hands out events), then ``process`` the partition's messages in offset order. An
   aggregate's partitions no record came to since the worker started are restored too, once
   the worker is settled, as an empty batch (``_restore_quiet``: a worker restarted after its
   input ended still closes the windows it restores). Then run the processor's timer
   (``tick``: idle windows close even with no input);
3. write the batch's state changes to the changelog and wait until the broker acknowledged
   them (acks=all), then mirror them into the table;
4. sleep until the rate limit lets each output out (``wait_s`` from when the limiter
   decided: backpressure), produce outputs, dead letters and overflow, and wait until the
   broker acknowledged every one (an aggregate's outputs report where they landed to its
   ``KafkaOutputLog``);
5. persist the processor's ``after`` state writes (e.g. tombstones of closed windows) and wait
   for them too, then ack the offsets (``BatchConsumer.ack_offsets``): Faust commits only
   acked offsets.

A stage without state (no table, no output log: ``records`` and the rank stage's repartition)
overlaps steps 4 and 1-2: while the broker acknowledges batch N, the loop takes and processes
batch N+1; it produces N+1, and acks N's offsets, only after N's outputs are acknowledged. So
the input is still committed only past acknowledged outputs, a partition's outputs still
leave in offset order, and at most two batches are in the worker (a rebalance or a shutdown
waits for both). Such a stage's producer reports only failed deliveries.

A failed delivery raises, so the worker stops without committing and a restart reprocesses
the batch (at-least-once; the state skips offsets it already applied).

Why state before outputs: a kill -9 can land anywhere. With the state first, every output
that reached the broker has its state in the changelog (e.g. an aggregate's ``closed`` window
entry holding the emitted message), so a restart knows about it and never emits something
different for the same key; an output lost in the crash is produced again from that state
(see ``streams.stages.aggregate`` and ``streams.stages.rank``; an aggregate first reads its
output topic back, so an output that did reach the broker is not sent twice). The reverse
order let a restart rebuild a window that was already out from only part of its records.

The changelog is produced with our confluent-kafka producer (idempotent, acks=all, so a
partition's messages land in order) straight into the table's changelog topic, in the format
Faust's table wrote and its recovery reads (key and value each a JSON string). Not through
``Table.send_changelog``: its buffer's ``flush`` gives up after 0.1 s without a send and
returns with messages still queued, so "flushed" did not mean "acknowledged".

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
from dataclasses import dataclass
from typing import Any, cast

import faust
import orjson
from confluent_kafka import KafkaError, Producer
from faust.types import TP

from headrace import metrics
from headrace.errors import DeliveryError
from streams import table_store
from streams.batch_topic import BatchTopic
from streams.consumer import BatchConsumer
from streams.output_log import KafkaOutputLog
from streams.settled import settled
from streams.stages.base import BatchOutput, InMessage, OutMessage, StageProcessor, StateWrite

__all__ = ["StageRunner"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Batch:
    """One batch between ``_prepare``, ``_send`` and ``_finish``."""

    n_in: int
    by_partition: dict[int, list[InMessage]]
    outputs: list[BatchOutput]
    ready_at: list[float]  # per output: monotonic time the rate limit lets it out (0: now)
    seconds: float  # processing time so far, for the batch-seconds histogram
    produced: bool = False
    acked: asyncio.Future[int] | None = None  # the flush: messages left unacknowledged


class StageRunner:
    """Runs one stage; see the module doc. ``labels``: (pipeline, stage) for metrics.

    ``producer`` must report successful deliveries to a stage with a ``table`` (changelog
    offsets) or an ``output_log`` (where outputs landed); a stateless stage only needs failed
    ones (a producer with ``delivery.report.only.error``: no Python call per message).
    """

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
        output_log: KafkaOutputLog | None = None,
    ) -> None:
        self.app = app
        self.processor = processor
        self.topic = topic
        self.table = table
        self.producer = producer
        self.labels = (*labels, "stage")
        self.within = within
        self.output_log = output_log
        #: a stateless stage overlaps the acknowledgement of a batch with the next one
        self.overlaps = table is None and output_log is None
        self.restored: set[int] = set()
        self.position: dict[TP, int] = {}  # last offset processed per partition
        self.progress_at: dict[TP, float] = {}
        self._errors: list[str] = []
        self._changelog_offsets: dict[int, int] = {}  # changelog partition -> last offset
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
        if state:
            log.info(
                "stage %r: partition %d restored from %d state entries",
                self.labels[1],
                partition,
                len(state),
            )

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """The stage loop; runs until the app stops (task cancelled between batches).

        A stage without state (``overlaps``) processes batch N+1 while the broker
        acknowledges batch N: N+1 is produced, and N's offsets acked, only once N's outputs
        are acknowledged. A stateful stage handles one batch at a time (see the module doc).
        """
        buffer = self.topic.buffer
        sent: _Batch | None = None  # produced, its acknowledgement pending
        try:
            while True:
                records = await buffer.take(self.within, self.processor.batch_limit())
                batch = await self._prepare(records)
                if sent is not None:
                    await self._finish(sent)
                    sent = None
                await self._send(batch)
                if self.overlaps and batch.produced:
                    sent = batch
                else:
                    await self._finish(batch)
                if sent is None:
                    buffer.done()
        except BaseException:
            buffer.done()  # nothing more of this loop will be acked
            raise

    async def handle(self, records: list[Any]) -> None:
        """Process ``records`` (aiokafka ``ConsumerRecord``s), produce, wait for the broker's
        acknowledgement, then ack their offsets (one batch, not overlapped)."""
        batch = await self._prepare(records)
        await self._send(batch)
        await self._finish(batch)

    async def _prepare(self, records: list[Any]) -> _Batch:
        """Process ``records`` and run the timer; a stateful stage's state is persisted here
        (acknowledged before any of the batch's outputs is produced)."""
        started = time.perf_counter()
        wall_ms = int(time.time() * 1000)
        by_partition: dict[int, list[InMessage]] = defaultdict(list)
        for r in records:
            by_partition[r.partition].append(
                InMessage(
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    r.timestamp,
                    tuple(r.headers) if r.headers else (),
                )
            )
        outputs: list[BatchOutput] = []
        ready_at: list[float] = []  # per output: when the rate limit lets it out
        for partition, batch in by_partition.items():
            if partition not in self.restored:
                self._restore(partition)
            out = self.processor.process(partition, batch, wall_ms)
            ready_at.append(time.monotonic() + out.wait_s if out.wait_s > 0 else 0.0)
            if out.counts.get("reemitted") or out.counts.get("already_out"):
                log.info(
                    "stage %r: partition %d: of the outputs in the restored state, %d were "
                    "found in the output topic, %d are produced again",
                    self.labels[1],
                    partition,
                    out.counts.get("already_out", 0),
                    out.counts.get("reemitted", 0),
                )
            outputs.append(out)
        for quiet in self._restore_quiet(wall_ms):
            outputs.append(quiet)
            ready_at.append(0.0)
        tick = self.processor.tick(wall_ms, self._caught_up())
        outputs.append(tick)
        ready_at.append(time.monotonic() + tick.wait_s if tick.wait_s > 0 else 0.0)
        await self._persist([w for o in outputs for w in o.state])
        return _Batch(
            len(records), by_partition, outputs, ready_at, seconds=time.perf_counter() - started
        )

    async def _send(self, batch: _Batch) -> None:
        """Queue the batch's outputs and dead letters in the producer, each output once the
        rate limit lets it out (its wait counts from when the limiter decided: backpressure),
        and start waiting for the broker's acknowledgement (``batch.acked``)."""
        output_log = self.output_log
        for out, ready in zip(batch.outputs, batch.ready_at, strict=True):
            wait_s = ready - time.monotonic() if ready else 0.0
            if wait_s > 0:
                metrics.RATE_LIMIT_WAIT.labels(*self.labels).inc(wait_s)
                await asyncio.sleep(wait_s)
            self._produce_all(out.messages, self._on_output if output_log else None)
            self._produce_all(out.dead)
            batch.produced = batch.produced or bool(out.messages or out.dead)
        if batch.produced:
            batch.acked = asyncio.ensure_future(asyncio.to_thread(self.producer.flush, 60.0))

    async def _finish(self, batch: _Batch) -> None:
        """Wait for the acknowledgement of ``batch``'s outputs, persist its ``after`` state,
        then ack its input offsets (Faust commits only acked offsets)."""
        started = time.perf_counter()
        if batch.acked is not None:
            self._check_delivered(await batch.acked)
        await self._persist([w for o in batch.outputs for w in o.after])
        consumer = cast(BatchConsumer, self.app.consumer)
        now = time.monotonic()
        for partition, messages in batch.by_partition.items():
            tp = TP(self.processor.source, partition)
            consumer.ack_offsets(tp, [m.offset for m in messages])
            self.position[tp] = messages[-1].offset
            self.progress_at[tp] = now
        self._count(batch.n_in, batch.outputs, batch.seconds + time.perf_counter() - started)
        self.batches += 1

    def _restore_quiet(self, wall_ms: int) -> list[BatchOutput]:
        """Restore the assigned input partitions no record has come to since this worker
        started, once it is settled (tables recovered, not rebalancing), and process them
        as an empty batch: their stored outputs not yet in the output topic are sent again
        and their idle timer starts, as for a partition with records. Without this, a worker
        restarted after its input ended (kill -9 at the end of a backfill) never closed the
        restored open windows: no record would ever come to restore them."""
        applied = getattr(self.processor, "applied_offset", None)
        if self.table is None or applied is None or not settled(self.app):
            return []
        outputs = []
        for tp in list(self.app.consumer.assignment()):
            if tp.topic != self.processor.source or tp.partition in self.restored:
                continue
            self._restore(tp.partition)
            outputs.append(self.processor.process(tp.partition, [], wall_ms))
            self.position[TP(tp.topic, tp.partition)] = applied(tp.partition)
        return outputs

    def all_restored(self) -> bool:
        """Every assigned input partition's state is restored, once the worker is settled
        (a stateless stage, and one restoring as records come: always)."""
        if self.table is None or getattr(self.processor, "applied_offset", None) is None:
            return True  # restored lazily, as records come (the rank stage)
        if not settled(self.app):
            return False
        held = self.app.consumer.assignment()
        return {tp.partition for tp in held if tp.topic == self.processor.source} <= self.restored

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

    async def _persist(self, writes: list[StateWrite]) -> None:
        """Write ``writes`` to the changelog, wait for the broker, then mirror into the table."""
        if self.table is None or not writes:
            return
        topic = self.table.changelog_topic.get_topic_name()
        encoded: list[tuple[str, str | None]] = []
        for key, value in writes:
            raw_key = orjson.dumps(key, default=str).decode()
            raw_value = (
                None
                if value is None
                else base64.b64encode(pickle.dumps(value, protocol=5)).decode()
            )
            encoded.append((raw_key, raw_value))
            self._produce(
                OutMessage(
                    topic,
                    orjson.dumps(raw_key),  # as Faust's table writes them: JSON strings
                    None if raw_value is None else orjson.dumps(raw_value),
                    None,
                    partition=key[1],
                ),
                on_delivery=self._on_changelog,
            )
        await self._flush()
        by_partition: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
        for (key, _value), entry in zip(writes, encoded, strict=True):
            by_partition[key[1]].append(entry)
        for partition, entries in by_partition.items():
            table_store.write(self.table, partition, entries)
        data = self.table.data
        sent, self._changelog_offsets = self._changelog_offsets, {}
        for partition, offset in sent.items():
            try:  # RocksDB remembers how far the changelog is in the store already
                data.set_persisted_offset(TP(topic, partition), offset)
            except Exception:  # a store without it recovers from the start
                log.debug("store has no persisted offset", exc_info=True)

    def _on_changelog(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))
            return
        partition, offset = msg.partition(), msg.offset()
        if offset > self._changelog_offsets.get(partition, -1):
            self._changelog_offsets[partition] = offset

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def _on_output(self, err: KafkaError | None, msg: Any) -> None:
        """``_on_delivery`` that also tells the output log where the message landed."""
        if err is not None:
            self._errors.append(str(err))
        elif self.output_log is not None:
            self.output_log.delivered(msg.topic(), msg.partition(), msg.offset())

    def _produce(self, msg: OutMessage, on_delivery: Any = None) -> None:
        self._produce_all([msg], on_delivery)

    def _produce_all(self, msgs: list[OutMessage], on_delivery: Any = None) -> None:
        """Queue ``msgs`` in the producer (waiting for room when its queue is full)."""
        produce = self.producer.produce
        callback = on_delivery or self._on_delivery
        for msg in msgs:
            partition = -1 if msg.partition is None else msg.partition  # -1: by key
            while True:
                try:
                    produce(
                        msg.topic,
                        msg.value,
                        msg.key,
                        partition=partition,
                        on_delivery=callback,
                        timestamp=msg.timestamp_ms or 0,  # 0: now
                        headers=msg.headers or None,  # type: ignore[arg-type]
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)

    async def _flush(self) -> None:
        """Wait until the broker acknowledged everything produced so far."""
        self._check_delivered(await asyncio.to_thread(self.producer.flush, 60.0))

    def _check_delivered(self, remaining: int) -> None:
        """Raise ``DeliveryError`` if messages are left after a flush or a delivery failed."""
        if remaining or self._errors:
            errors, self._errors = self._errors[:5], []
            raise DeliveryError(
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
        if self.all_restored():  # before, the state of some partition is not known yet
            metrics.WINDOW_STATE_KEYS.labels(*labels).set(self.processor.state_size())


def state_key(raw: str | bytes) -> tuple[Any, ...]:
    """A state key as processors know it, from its table bytes (JSON array; lists -> tuples)."""
    return tuple(tuple(k) if isinstance(k, list) else k for k in orjson.loads(raw))
