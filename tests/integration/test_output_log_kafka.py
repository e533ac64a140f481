"""KafkaOutputLog on the real broker: partitions as librdkafka's murmur2_random, start offsets
that are lower bounds, and the read-back of a partition from a start to its end."""

from __future__ import annotations

from typing import Any

from headrace.config import KafkaConfig
from headrace.kafka_clients import make_producer
from streams.output_log import KafkaOutputLog


def test_output_log_places_and_reads_back_like_the_broker(
    kafka_bootstrap: str, new_topic: Any
) -> None:
    topic = new_topic(".out", 5)
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap)
    log = KafkaOutputLog(kafka, topic, 5, timeout=30)
    overrides: dict[str, Any] = {"linger.ms": 1}
    producer = make_producer(kafka, **overrides)
    landed: list[tuple[bytes, int, int]] = []

    def report(err: Any, msg: Any) -> None:
        assert err is None, err
        landed.append((msg.key(), msg.partition(), msg.offset()))
        log.delivered(msg.topic(), msg.partition(), msg.offset())

    # the producer's own partitioner (no explicit partition) agrees with ours
    keys = [f'["c{i:03d}",{i * 10_000}]'.encode() for i in range(100)]
    for key in keys:
        producer.produce(topic, b"first", key, on_delivery=report)
    assert producer.flush(30) == 0
    assert all(log.partition(key) == partition for key, partition, _ in landed)

    # start: at or below where the next message lands; the read-back from there finds exactly
    # what was produced after it, by key and value
    where = log.partition(keys[0])
    start = log.start(where)
    assert start == max(o for _, p, o in landed if p == where) + 1
    producer.produce(topic, b"second", keys[0], partition=where, on_delivery=report)
    producer.produce(topic, b"third", keys[0], partition=where, on_delivery=report)
    assert producer.flush(30) == 0
    assert log.present(where, start) == {(keys[0], b"second"), (keys[0], b"third")}
    assert log.present(where, start + 2) == set()  # at the end: nothing to read
    assert (keys[0], b"first") in log.present(where, 0)

    fresh = KafkaOutputLog(kafka, topic, 5)  # nothing delivered yet: the broker's end offset
    assert fresh.start(where) == start + 2
