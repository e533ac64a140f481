"""Producing a request's records to Kafka and waiting for the broker's acknowledgements.

``Publisher`` is the narrow interface the routes use (tests put a fake behind it);
``KafkaPublisher`` is the real one, a confluent-kafka producer made by
``headrace.kafka_clients.make_producer`` (acks=all, idempotent, murmur2 keys, lz4).

Contract of ``publish(topic, messages, letters)``:

- every message is produced with its key and timestamp, every dead letter to
  ``<topic>.dlq`` with the ``headrace.dlq`` headers; it returns once the broker acknowledged
  all of them, with the ``Delivery`` (partition, offset) of each message, in order;
- it never blocks the event loop: ``produce`` only enqueues, a poll thread serves the
  delivery reports, and one callback per request resolves the request's future through
  ``loop.call_soon_threadsafe`` when its last report arrived;
- ``PublishError`` when a report is an error, when the acknowledgements take longer than
  ``timeout`` (then some records may still be written later), or ``QueueFull`` (a subclass)
  when the producer's local queue has no room for the request: nothing of it was produced.

``publish_atomic(topic, messages)`` writes the messages in one Kafka transaction (a second,
transactional producer, made on first use, one transaction at a time; the blocking
transaction calls run in a worker thread): all of them are visible to read_committed
consumers, or none.

``on_down(reason)`` is called from librdkafka's thread when every broker is unreachable or
the producer hit a fatal error: the gateway opens its breaker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from gateway.validate import Message
from headrace.dlq import DeadLetter, dlq_topic
from headrace.kafka_clients import make_producer

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Producer
    from confluent_kafka import Message as KafkaMessage

    from headrace.config import KafkaConfig

__all__ = ["Delivery", "KafkaPublisher", "PublishError", "Publisher", "QueueFull"]

log = logging.getLogger(__name__)

#: producer settings of the gateway that ``kafka.client`` may change: a short linger (a
#: single-record request waits for it) and a queue bounded well below librdkafka's default
GATEWAY_PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 2,
    "queue.buffering.max.messages": 200_000,
}


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker stored one record."""

    partition: int
    offset: int


class PublishError(Exception):
    """The records were not all acknowledged; ``reason`` is safe to send to the client.

    ``later``, when set (the acknowledgements timed out but may still come), is a function
    whose awaitable gives the deliveries once every report arrived (within the producer's
    ``message.timeout.ms``), or raises ``PublishError`` if some failed: the gateway keeps an
    ``Idempotency-Key`` retry waiting for that outcome instead of producing again."""

    def __init__(
        self, reason: str, *, later: Callable[[], Awaitable[list[Delivery]]] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.later = later


class QueueFull(PublishError):
    """The producer's local queue has no room for the request; nothing was produced."""


class Publisher(Protocol):
    """What the routes need from Kafka (see the module docstring)."""

    async def publish(
        self, topic: str, messages: Sequence[Message], letters: Sequence[DeadLetter]
    ) -> list[Delivery]: ...

    async def publish_atomic(self, topic: str, messages: Sequence[Message]) -> list[Delivery]: ...

    async def reachable(self, timeout: float) -> bool: ...

    def close(self, timeout: float) -> int: ...


class _Batch:
    """The delivery reports of one request; called from the poll thread."""

    __slots__ = ("count", "error", "future", "loop", "results", "total")

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.total = n
        self.count = itertools.count(1)
        """Records accounted for: ``next`` is one atomic step under the GIL, so exactly one
        caller (a report on the poll thread, or ``settle``) sees ``total`` (a lock per
        report cost ~0.15 us a record)."""
        self.results: list[Delivery | None] = [None] * n
        self.error: str | None = None

    def report(self, index: int, err: KafkaError | None, msg: KafkaMessage) -> None:
        """A delivery report (poll thread); ``index`` -1 for a dead letter."""
        if err is not None:
            if self.error is None:
                self.error = err.str()
        elif index >= 0:
            partition = msg.partition()
            offset = msg.offset()
            if partition is not None and offset is not None:
                self.results[index] = Delivery(partition, offset)
        if next(self.count) == self.total:
            try:
                self.loop.call_soon_threadsafe(_resolve, self.future)
            except RuntimeError:  # the loop is closed: nobody waits for this request anymore
                pass

    def settle(self, missing: int, why: str) -> None:
        """``missing`` records were never produced (event loop thread): no report will come
        for them."""
        self.error = self.error or why
        total = self.total
        if any(next(self.count) == total for _ in range(missing)):
            _resolve(self.future)


def _outcome(batch: _Batch) -> list[Delivery]:
    """The deliveries of a batch whose reports all arrived; PublishError if one failed."""
    if batch.error is not None:
        raise PublishError(f"the broker did not acknowledge every record: {batch.error}")
    return [r for r in batch.results if r is not None]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class KafkaPublisher:
    """The real ``Publisher`` (see the module docstring)."""

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        timeout: float,
        transactional_id: str | None = None,
        on_down: Callable[[str], None] = lambda reason: None,
        producer: Producer | None = None,
    ) -> None:
        self.kafka = kafka
        self.timeout = timeout
        self._transactional_id = transactional_id
        self._on_down = on_down
        if producer is None:  # not ``producer or``: a Producer's len() is its queue, often 0
            producer = make_producer(
                kafka,
                defaults=GATEWAY_PRODUCER_DEFAULTS,
                **{"message.timeout.ms": int(timeout * 1000), "error_cb": self._error},
            )
        self._producer = producer
        self._capacity = int(
            {**GATEWAY_PRODUCER_DEFAULTS, **kafka.client}["queue.buffering.max.messages"]
        )
        self._tx: Producer | None = None
        self._tx_lock = asyncio.Lock()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="gateway-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _error(self, err: KafkaError) -> None:
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal():
            log.warning("gateway producer: %s", err.str())
            self._on_down(err.str())

    async def publish(
        self, topic: str, messages: Sequence[Message], letters: Sequence[DeadLetter]
    ) -> list[Delivery]:
        """See the module docstring."""
        total = len(messages) + len(letters)
        if total == 0:
            return []
        if len(self._producer) + total > self._capacity:
            raise QueueFull(
                f"the gateway's producer queue is full ({len(self._producer)} records waiting "
                "for the broker); retry later"
            )
        batch = _Batch(asyncio.get_running_loop(), total)
        produce = self._producer.produce
        report = batch.report
        produced = 0
        try:
            for m in messages:
                produce(
                    topic,
                    m.value,
                    m.key,
                    timestamp=m.timestamp_ms,
                    on_delivery=partial(report, produced),
                )
                produced += 1
            dead = dlq_topic(topic)
            for letter in letters:
                produce(
                    dead,
                    letter.value,
                    letter.key,
                    headers=list(letter.headers()),
                    on_delivery=partial(batch.report, -1),
                )
                produced += 1
        except BufferError:
            batch.settle(total - produced, "the gateway's producer queue is full")
            await self._wait(batch)
            raise QueueFull("the gateway's producer queue is full; retry later") from None
        await self._wait(batch)
        return _outcome(batch)

    async def _wait(self, batch: _Batch) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(batch.future), self.timeout + 1.0)
        except TimeoutError:

            async def later() -> list[Delivery]:
                await batch.future
                return _outcome(batch)

            raise PublishError(
                f"the broker did not acknowledge the records within {self.timeout:g} s; they "
                "may still be written (a retry with the same Idempotency-Key gets their outcome)",
                later=later,
            ) from None

    async def publish_atomic(self, topic: str, messages: Sequence[Message]) -> list[Delivery]:
        """See the module docstring."""
        async with self._tx_lock:
            return await asyncio.to_thread(self._transaction, topic, messages)

    def _transaction(self, topic: str, messages: Sequence[Message]) -> list[Delivery]:
        from confluent_kafka import KafkaException

        producer = self._transactional()
        results: list[Delivery | None] = [None] * len(messages)
        errors: list[str] = []

        def report(index: int, err: KafkaError | None, msg: KafkaMessage) -> None:
            if err is not None:
                errors.append(err.str())
                return
            partition, offset = msg.partition(), msg.offset()
            if partition is not None and offset is not None:
                results[index] = Delivery(partition, offset)

        try:
            producer.begin_transaction()
            for i, m in enumerate(messages):
                producer.produce(
                    topic, m.value, m.key, timestamp=m.timestamp_ms, on_delivery=partial(report, i)
                )
            producer.commit_transaction(self.timeout)
        except (KafkaException, BufferError) as exc:
            self._abort(producer)
            raise PublishError(f"the transaction was not committed: {exc}") from None
        deadline = time.monotonic() + self.timeout
        while any(r is None for r in results) and not errors and time.monotonic() < deadline:
            producer.poll(0.01)
        if errors or any(r is None for r in results):
            raise PublishError(f"the transaction's records were not all acknowledged: {errors}")
        return [r for r in results if r is not None]

    def _transactional(self) -> Producer:
        if self._tx is None:
            if self._transactional_id is None:
                raise PublishError("atomic topics need a transactional producer id")
            tx = make_producer(
                self.kafka,
                defaults=GATEWAY_PRODUCER_DEFAULTS,
                **{
                    "transactional.id": self._transactional_id,
                    "message.timeout.ms": int(self.timeout * 1000),
                    "transaction.timeout.ms": int(max(self.timeout * 2, 60) * 1000),
                    "error_cb": self._error,
                },
            )
            tx.init_transactions(self.timeout)
            self._tx = tx
        return self._tx

    def _abort(self, producer: Producer) -> None:
        from confluent_kafka import KafkaException

        try:
            producer.abort_transaction(self.timeout)
        except KafkaException as exc:
            log.warning("gateway: aborting a transaction failed (%s); new producer next time", exc)
            self._tx = None

    async def reachable(self, timeout: float) -> bool:
        """True when a broker answers a metadata request within ``timeout`` seconds."""
        from confluent_kafka import KafkaException

        try:
            await asyncio.to_thread(self._producer.list_topics, None, timeout)
        except KafkaException:
            return False
        return True

    def close(self, timeout: float) -> int:
        """Stop the poll thread and flush; return the records still not acknowledged."""
        self._stop.set()
        self._poller.join(timeout=1.0)
        left = self._producer.flush(timeout)
        if self._tx is not None:
            self._tx.flush(timeout)
        return left
