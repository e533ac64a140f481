"""KafkaPublisher with a fake producer: deliveries in order from the poll thread, dead
letters to <topic>.dlq, a full queue refused before producing, a failed delivery, a timeout
whose outcome comes later, and 'all brokers down' reported."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, Producer

from gateway.publish import Delivery, KafkaPublisher, PublishError, QueueFull
from gateway.validate import Message
from headrace.config import KafkaConfig
from headrace.dlq import DeadLetter

KAFKA = KafkaConfig.model_validate({"bootstrap_servers": "127.0.0.1:1"})


class FakeMsg:
    def __init__(self, partition: int, offset: int) -> None:
        self._p, self._o = partition, offset

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class FakeProducer:
    """Queues produced records; ``poll`` (the publisher's poll thread) reports them while
    ``deliver`` is set, as errors when ``error`` is set."""

    def __init__(self, buffer_after: int | None = None) -> None:
        self.lock = threading.Lock()
        self.queue: list[tuple[str, Any, Callable[..., None] | None]] = []
        self.produced: list[dict[str, Any]] = []
        self.offsets: dict[str, int] = {}
        self.deliver = threading.Event()
        self.deliver.set()
        self.error: KafkaError | None = None
        self.buffer_after = buffer_after

    def __len__(self) -> int:
        return len(self.queue)

    def produce(self, topic: str, value: Any = None, key: Any = None, **kw: Any) -> None:
        with self.lock:
            if self.buffer_after is not None and len(self.produced) >= self.buffer_after:
                raise BufferError("Local: Queue full")
            self.produced.append({"topic": topic, "value": value, "key": key, **kw})
            self.queue.append((topic, value, kw.get("on_delivery")))

    def poll(self, timeout: float = 0) -> int:
        if not self.deliver.is_set():
            time.sleep(min(timeout, 0.01))
            return 0
        with self.lock:
            ready, self.queue = self.queue, []
        for topic, _value, callback in ready:
            offset = self.offsets.get(topic, 0)
            self.offsets[topic] = offset + 1
            if callback is not None:
                callback(self.error, FakeMsg(0, offset))
        if not ready:
            time.sleep(min(timeout, 0.01))
        return len(ready)

    def flush(self, timeout: float = 0) -> int:
        self.poll(0)
        return len(self.queue)


def publisher(fake: FakeProducer, **kw: Any) -> KafkaPublisher:
    return KafkaPublisher(
        KAFKA, timeout=kw.pop("timeout", 5.0), producer=cast(Producer, fake), **kw
    )


def messages(n: int) -> list[Message]:
    return [Message(i, f"k{i}".encode(), b'{"n": %d}' % i, 1000 + i) for i in range(n)]


def letter() -> DeadLetter:
    return DeadLetter("orders", "gateway", "PoisonRecord", "record 9: bad", None, b"k9", b"{}")


def test_deliveries_in_request_order_and_dead_letters_to_the_dlq() -> None:
    fake = FakeProducer()
    pub = publisher(fake)
    try:
        got = asyncio.run(pub.publish("orders", messages(3), [letter()]))
    finally:
        assert pub.close(1.0) == 0
    assert got == [Delivery(0, 0), Delivery(0, 1), Delivery(0, 2)]
    assert [(p["topic"], p["key"], p.get("timestamp")) for p in fake.produced] == [
        ("orders", b"k0", 1000),
        ("orders", b"k1", 1001),
        ("orders", b"k2", 1002),
        ("orders.dlq", b"k9", None),
    ]
    headers = dict(fake.produced[3]["headers"])
    assert headers["headrace.stage"] == b"gateway"


def test_a_request_past_the_queue_capacity_is_refused_before_producing() -> None:
    fake = FakeProducer()
    fake.deliver.clear()
    pub = publisher(fake)
    pub._capacity = 4
    try:
        asyncio.run(_publish_soon(pub, messages(3)))  # 3 waiting in the queue
        with pytest.raises(QueueFull, match="queue is full"):
            asyncio.run(pub.publish("orders", messages(2), []))
        assert len(fake.produced) == 3
    finally:
        fake.deliver.set()
        pub.close(1.0)


async def _publish_soon(pub: KafkaPublisher, msgs: list[Message]) -> None:
    task = asyncio.ensure_future(pub.publish("orders", msgs, []))
    await asyncio.sleep(0.05)
    task.cancel()


def test_a_buffer_error_mid_request_is_queue_full_after_the_produced_ones_settle() -> None:
    fake = FakeProducer(buffer_after=2)
    pub = publisher(fake)
    try:
        with pytest.raises(QueueFull):
            asyncio.run(pub.publish("orders", messages(5), []))
    finally:
        pub.close(1.0)
    assert len(fake.produced) == 2


def test_a_failed_delivery_is_a_publish_error() -> None:
    fake = FakeProducer()
    fake.error = KafkaError(KafkaError._MSG_TIMED_OUT)
    pub = publisher(fake)
    try:
        with pytest.raises(PublishError, match="did not acknowledge every record") as err:
            asyncio.run(pub.publish("orders", messages(2), []))
    finally:
        pub.close(1.0)
    assert err.value.later is None


def test_a_timeout_gives_the_outcome_later() -> None:
    fake = FakeProducer()
    fake.deliver.clear()
    pub = publisher(fake, timeout=0.1)

    async def main() -> list[Delivery]:
        with pytest.raises(PublishError, match=r"within 0\.1 s") as err:
            await pub.publish("orders", messages(2), [])
        later = err.value.later
        assert later is not None
        fake.deliver.set()  # the broker answers after all
        return await asyncio.wait_for(later(), 5)

    try:
        assert asyncio.run(main()) == [Delivery(0, 0), Delivery(0, 1)]
    finally:
        pub.close(1.0)


def test_all_brokers_down_is_reported() -> None:
    downs: list[str] = []
    pub = publisher(FakeProducer(), on_down=downs.append)
    try:
        pub._error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "3/3 brokers are down"))
        pub._error(KafkaError(KafkaError._TRANSPORT, "one connection closed"))
    finally:
        pub.close(1.0)
    assert downs == ["3/3 brokers are down"]
