"""Faust's aiokafka consumer with a batch path for the topics our stages read.

``BatchApp`` is a ``faust.App`` whose consumer is a ``BatchConsumer``. Everything Faust does
stays: the consumer group and its assignor, seeking to committed offsets, table recovery
from changelogs, commits of acked offsets, the web server and timers. Only the fetcher's
``_drain_messages`` loop changes: a fetched partition batch of a topic in
``BatchApp.batch_buffers`` goes to the ``BatchBuffer`` of each of that topic's readers (stage
loops, lookups) in one call, as the raw aiokafka records (no ``Message``/``Event`` objects, no
task per message). Every other topic (table changelogs during recovery, user agents) takes
Faust's own per-message path unchanged. The consumer thread (``BatchConsumerThread``) makes
its aiokafka consumer hold an empty fetch for ``FETCH_MAX_WAIT_MS`` instead of Faust's 1.5 s,
and read only committed transactions (Faust reads uncommitted ones unless the app itself is
exactly-once; a source with ``exactly_once: true`` aborts a transaction on a retry, and the
stages must not see the aborted copy, as the sinks already do not).

Acks: the stage acks a batch with ``ack_offsets`` once its output is acknowledged by the
broker; an offset of a topic with several readers counts as acked once all of them acked it.
Faust's commit timer then commits the consecutive acked offsets, as for ``Event.ack``.
Offsets skipped inside a fetched batch (compaction, transaction markers) are recorded as gaps
exactly as Faust does, so they do not hold the commit back. Offsets skipped *after* the last
record (the commit marker that ends every transaction of an ``exactly_once`` source) have no
later record to reveal them: once the fetch position passed them with every record before it
delivered, they are acked as if read (``_ack_passed``), as Kafka Streams commits the consumer's
position. Without this a topic written in transactions kept a lag of 1 per partition forever,
and ``run --until-idle`` never saw the pipeline idle.

Rebalance and shutdown: ``wait_empty`` (called by Faust before it commits at a revocation, and
by ``on_stop``) drops the records still waiting in the buffers (Faust seeks to the committed
offsets afterwards) and waits, up to ``drain_timeout``, for the batches in flight in each stage
loop (two for a stateless stage, see ``streams.runner``) to finish and ack, so the commit
includes them (graceful SIGTERM: finish, commit, leave).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP
from faust.types.tuples import ack_lock
from mode import Service, ServiceT
from mode.utils.futures import notify

from streams.batch_topic import BatchBuffer

__all__ = ["FETCH_MAX_WAIT_MS", "BatchApp", "BatchConsumer"]

#: How long the broker may hold a fetch request that found no new records. Faust hard-codes
#: 1,500 ms. aiokafka sends one fetch request per broker at a time, covering only the
#: partitions with nothing left unconsumed, so one idle partition in a request (a finished
#: input, a quiet lookup topic) held every other partition on that broker for up to 1.5 s:
#: an aggregate reading its upstream stage's topic got a fetch every ~1.5 s once the
#: pipeline's input was read (``headrace bench stream``). 100 ms keeps an idle worker at ten
#: empty fetches a second.
FETCH_MAX_WAIT_MS = 100


class BatchApp(faust.App):
    """A ``faust.App`` whose consumer is a ``BatchConsumer`` (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["stream_wait_empty"] = True  # our wait_empty waits for batches, not events
        super().__init__(*args, **kwargs)
        #: topic name -> the buffers of its readers (stage loops, lookups) in this worker
        self.batch_buffers: dict[str, list[BatchBuffer]] = {}
        #: seconds a shutdown or rebalance waits for the batch in flight
        self.drain_timeout = 60.0

    def add_reader(self, topic: str, buffer: BatchBuffer) -> None:
        """Deliver ``topic``'s records to ``buffer`` too (one buffer per reader)."""
        self.batch_buffers.setdefault(topic, []).append(buffer)

    def _new_consumer(self) -> BatchConsumer:
        transport = self.transport
        return BatchConsumer(
            transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=transport.loop,
        )


class BatchConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer holding fetches ``FETCH_MAX_WAIT_MS`` and
    reading committed transactions only."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # both read when start() makes the fetcher
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        consumer._isolation_level = "read_committed"
        return consumer


class BatchConsumer(AIOKafkaConsumer):
    """See the module doc."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: per partition of a topic with several readers: offset -> readers that acked it
        self._fanout_acks: dict[TP, dict[int, int]] = {}
        #: per partition: the offset after the last one delivered to the buffers, set by a
        #: seek to the committed offsets and by each delivery. See ``_ack_passed``.
        self._delivered_to: dict[TP, int] = {}
        #: partitions with fetched records not delivered (a rebalance began, flow stopped):
        #: their position says nothing until the next seek
        self._dropped: set[TP] = set()

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _buffers(self) -> dict[str, list[BatchBuffer]]:
        return cast(BatchApp, self.app).batch_buffers

    def _all_buffers(self) -> list[BatchBuffer]:
        return [b for readers in self._buffers().values() for b in readers]

    def ack_offsets(self, tp: TP, offsets: Iterable[int]) -> int:
        """One reader is done with ``offsets`` of ``tp``. They become committable once every
        reader of the topic in this worker acked them; returns how many became so."""
        readers = len(self._buffers().get(tp.topic, ()))
        if readers > 1:
            fanout = self._fanout_acks.setdefault(tp, {})
            done = []
            for o in offsets:
                n = fanout.get(o, 0) + 1
                if n >= readers:
                    fanout.pop(o, None)
                    done.append(o)
                else:
                    fanout[o] = n
            offsets = done
        with ack_lock:
            committed = self._committed_offset[tp]
            index = self._acked_index[tp]
            new = [o for o in offsets if (committed is None or o >= committed) and o not in index]
            if new:
                index.update(new)
                self._acked[tp].extend(new)
                self._n_acked += len(new)
            notify(self._waiting_for_ack)
            return len(new)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets; the fetch position of each partition with
        a committed offset is then that offset, with nothing delivered past it."""
        self._delivered_to.clear()
        self._dropped.clear()
        await super().perform_seek()
        for tp, offset in self._committed_offset.items():
            if offset is not None and offset >= 0 and tp.topic in self._buffers():
                self._delivered_to[tp] = offset

    def _drop(self, tps: Iterable[TP]) -> None:
        """Fetched records of ``tps`` were not delivered (Faust seeks again after it)."""
        for tp in tps:
            self._dropped.add(tp)
            self._delivered_to.pop(tp, None)

    def _ack_passed(self) -> None:
        """Ack the offsets the fetcher passed without a record after the last one delivered
        (transaction markers, aborted or compacted-away batches): no record will ever show
        them as a gap. Only for partitions whose every record up to there was delivered."""
        if not self._delivered_to or not self.flow_active:
            return
        try:
            consumer = self._thread._ensure_consumer()
            assignment = consumer._subscription.subscription.assignment
        except AttributeError:  # not subscribed (yet)
            return
        with ack_lock:
            for tp, start in list(self._delivered_to.items()):
                try:
                    state = assignment.state_value(aiokafka.TopicPartition(tp.topic, tp.partition))
                except (KeyError, AttributeError):
                    continue
                if state is None or not state.has_valid_position or state.position <= start:
                    continue
                end = state.position
                self._delivered_to[tp] = end
                committed = self._committed_offset[tp]
                index = self._acked_index[tp]
                new = [
                    o
                    for o in range(start, end)
                    if (committed is None or o >= committed) and o not in index
                ]
                if new:
                    index.update(new)
                    self._acked[tp].extend(new)
                    self._n_acked += len(new)

    async def wait_batches_done(self, timeout: float) -> list[str]:
        """Wait until no stage has a batch in flight; the topics still busy after ``timeout``."""
        busy = []
        for topic, readers in self._buffers().items():
            for buffer in readers:
                if not await buffer.idle(timeout):
                    busy.append(topic)
        return busy

    async def wait_empty(self) -> None:
        """At a rebalance or shutdown: drop what waits, let the batches in flight finish and
        ack, then Faust's commit (needs ``stream_wait_empty=True``, which ``BatchApp`` sets)."""
        for buffer in self._all_buffers():
            buffer.clear()
        busy = await self.wait_batches_done(cast(BatchApp, self.app).drain_timeout)
        if busy:
            self.log.warning("committing with a batch still in flight for %s", ", ".join(busy))
        # offsets only some readers acked are fetched again after the seek, for every reader
        self._fanout_acks.clear()
        await super().wait_empty()

    async def on_stop(self) -> None:
        """Shutdown: no new batches (``close``), then ``wait_empty`` and the final commit."""
        for buffer in self._all_buffers():
            buffer.close()
        await super().on_stop()

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover (runtime)
        """Faust's fetch loop with the batch path (see the module doc)."""
        buffers = self._buffers()
        callback = self.callback
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        buffered = self._buffered_partitions
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if not records:
                    self._ack_passed()
                    continue
                if self.should_stop or not self.flow_active:
                    self._drop(records)
                    continue
                generation = self.app.consumer_generation_id

                def valid(generation: int = generation) -> bool:
                    return self.flow_active and self.app.consumer_generation_id == generation

                for tp, batch in records.items():
                    if not valid() or (active is not None and not (tp in active or tp in buffered)):
                        self._drop([tp])
                        continue
                    last = read_offset[tp]
                    fresh = batch if last is None else [r for r in batch if r.offset >= last]
                    if not fresh:
                        continue
                    readers = buffers.get(tp.topic)
                    if readers:
                        if acks_enabled_for(tp.topic):
                            await self._record_gaps(tp, last, [r.offset for r in fresh])
                        delivered = [await b.put_many(fresh, valid) for b in readers]
                        if all(delivered):
                            read_offset[tp] = fresh[-1].offset
                            if tp not in self._dropped:
                                self._delivered_to[tp] = fresh[-1].offset + 1
                        else:
                            self._drop([tp])
                        continue
                    for record in fresh:  # Faust's own path, one message at a time
                        offset = record.offset
                        r_offset = read_offset[tp]
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, r_offset + 1, offset - 1)
                        await self.wait_first(
                            callback(self._to_message(tp, record)), self.suspend_flow.wait()
                        )
                        read_offset[tp] = offset
                self._ack_passed()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    async def _record_gaps(self, tp: TP, last: int | None, offsets: list[int]) -> None:
        """Offsets missing between consecutive records (and since ``last``) become gaps."""
        previous = last
        for offset in offsets:
            if previous and offset - previous > 1:
                # Faust's _add_gap includes its end: offset - 1, or the record's own offset
                # would be both acked and in the gap, and Faust's commit (consecutive
                # offsets) would pass only one gap per commit
                await self._add_gap(tp, previous + 1, offset - 1)
            previous = offset
