"""Where a stage's output messages land, and reading them back after a crash.

A stateful stage that must not emit a message twice after a kill -9 stores, with the message
(before producing it), the output partition it goes to and an offset at or below the one it
will land at. On restore it reads that partition from there to its current end and re-sends
only what is not found (see ``streams.stages.aggregate``). ``KafkaOutputLog`` is that for
one topic:

- ``partition(key)``: Kafka's default partitioner for keyed messages, murmur2 of the key
  bytes (the Java client's ``Utils.murmur2``, positive, modulo the partition count), which is
  also what our producers' ``murmur2_random`` computes; the stage sets it on the message
  explicitly, so the message lands where the state says whatever a client's partitioner does;
- ``start(partition)``: a lower bound for the offset of a message produced from now on: the
  partition's end offset read from the broker the first time, then one past the last offset
  the broker acknowledged for our own messages (``delivered``, from the producer's delivery
  reports). Offsets only grow, so a stale value is still a lower bound, only a less tight
  one: the read-back scans what was written to the partition since (by any worker);
- ``present(partition, start)``: the (key, value) pairs from ``start`` to the partition's
  end offset as of the call.

The read happens at restore, seconds after the crash (Faust's start and recovery), so a
produce request the killed process had sent is appended by then; a process that is still
alive (a zombie, not a crashed worker) could still append later, which this does not cover.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from headrace.config import KafkaConfig
from headrace.kafka_clients import make_consumer, watermarks

__all__ = ["KafkaOutputLog", "murmur2", "partition_for"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as the Java client computes it (a signed 32-bit int)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KafkaOutputLog:
    """One output topic's placement and read-back; see the module doc.

    ``delivered`` may be called from the producer's delivery-report thread; the rest from
    the stage's task. Raises ``TimeoutError`` when the broker does not answer in ``timeout``.
    """

    def __init__(
        self, kafka: KafkaConfig, topic: str, partitions: int, *, timeout: float = 30.0
    ) -> None:
        if partitions < 1:
            raise ValueError(f"output topic {topic!r}: partition count {partitions} must be >= 1")
        self.kafka = kafka
        self.topic = topic
        self.partitions = partitions
        self.timeout = timeout
        self._next: dict[int, int] = {}
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None

    def partition(self, key: bytes) -> int:
        return partition_for(key, self.partitions)

    def start(self, partition: int) -> int:
        with self._lock:
            known = self._next.get(partition)
        if known is not None:
            return known
        end = self._end(partition)
        with self._lock:
            self._next[partition] = max(end, self._next.get(partition, end))
            return self._next[partition]

    def delivered(self, topic: str, partition: int, offset: int) -> None:
        """The broker acknowledged a message of ours at ``offset`` (others' topics ignored)."""
        if topic != self.topic or offset < 0:
            return
        with self._lock:
            if offset >= self._next.get(partition, 0):
                self._next[partition] = offset + 1

    def present(self, partition: int, start: int) -> set[tuple[bytes | None, bytes | None]]:
        end = self._end(partition)
        found: set[tuple[bytes | None, bytes | None]] = set()
        if start >= end:
            return found
        consumer = self._client()
        consumer.assign([TopicPartition(self.topic, partition, max(start, 0))])
        stop = time.monotonic() + self.timeout
        last = -1
        try:
            while last < end - 1:
                if time.monotonic() > stop:
                    raise TimeoutError(
                        f"output topic {self.topic!r} partition {partition}: read offsets "
                        f"{start}..{end - 1} only up to {last} within {self.timeout} s; "
                        "is the broker reachable?"
                    )
                for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                    error, offset = msg.error(), msg.offset()
                    if offset is None:
                        continue
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            last = max(last, offset - 1)  # the end, gaps included
                        continue  # transient errors: keep reading until the deadline
                    if offset < end:
                        found.add((msg.key(), msg.value()))
                    last = max(last, offset)
        finally:
            consumer.unassign()
        return found

    def _end(self, partition: int) -> int:
        tp = TopicPartition(self.topic, partition)
        _, high = watermarks(self._client(), tp, self.timeout)
        return high

    def _client(self) -> Consumer:
        if self._consumer is None:
            overrides: dict[str, Any] = {
                "isolation.level": "read_uncommitted",
                "enable.partition.eof": True,
            }
            self._consumer = make_consumer(self.kafka, f"{self.topic}.readback", **overrides)
        return self._consumer
