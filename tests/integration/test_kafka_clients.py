"""Both Kafka clients we use (confluent-kafka, aiokafka) against the stack's broker.

Round trips of 1,000 keyed records: every record comes back exactly once, with its key and
value, in production order within its partition; an aiokafka consumer group resumes after its
committed offsets.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer
from confluent_kafka import TopicPartition as CkTopicPartition

N_RECORDS = 1000
PARTITIONS = 3
N_KEYS = 17
TIMEOUT = 60.0


@dataclass(frozen=True, order=True)
class Rec:
    partition: int
    offset: int
    key: bytes
    value: bytes


def _rec(msg: Message) -> Rec:
    """A delivered or consumed confluent-kafka message: every field is set."""
    partition, offset, key, value = msg.partition(), msg.offset(), msg.key(), msg.value()
    assert partition is not None and offset is not None and key is not None and value is not None
    return Rec(partition, offset, key, value)


def _record(i: int) -> tuple[bytes, bytes]:
    """The i-th record: keys repeat, values carry the production sequence number."""
    return f"key-{i % N_KEYS}".encode(), f"value-{i}".encode()


def _check_round_trip(produced: list[Rec], consumed: list[Rec]) -> None:
    """Exactly the produced records came back: same positions, keys, values, order per partition."""
    assert len(produced) == N_RECORDS
    assert len(consumed) == N_RECORDS, f"consumed {len(consumed)} records, produced {N_RECORDS}"
    by_partition: dict[int, list[Rec]] = defaultdict(list)
    for rec in consumed:
        by_partition[rec.partition].append(rec)
    for partition, recs in by_partition.items():
        offsets = [r.offset for r in recs]
        assert offsets == sorted(offsets), f"partition {partition} came back out of order"
    assert sorted(consumed) == sorted(produced)
    # A key lives in one partition, and there its values keep the order they were produced in.
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    seq_of_key: dict[bytes, list[int]] = defaultdict(list)
    for rec in sorted(consumed):
        partitions_of_key[rec.key].add(rec.partition)
        seq_of_key[rec.key].append(int(rec.value.split(b"-")[1]))
    assert all(len(p) == 1 for p in partitions_of_key.values()), partitions_of_key
    for key, seqs in seq_of_key.items():
        assert seqs == sorted(seqs), f"values of {key!r} are out of production order"
    assert len(seq_of_key) == N_KEYS


# -- confluent-kafka ------------------------------------------------------------------------


def test_confluent_round_trip(kafka_bootstrap, new_topic, unique):
    topic = new_topic(".ck", PARTITIONS)
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    produced: list[Rec] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            produced.append(_rec(msg))

    for i in range(N_RECORDS):
        key, value = _record(i)
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    left = producer.flush(TIMEOUT)
    assert left == 0, f"{left} records not delivered within {TIMEOUT:.0f}s"
    assert errors == []

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"{unique}.ck-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        consumer.assign([CkTopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        consumed: list[Rec] = []
        deadline = time.monotonic() + TIMEOUT
        while len(consumed) < N_RECORDS and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=1.0):
                assert msg.error() is None, msg.error()
                consumed.append(_rec(msg))
        assert len(consumed) == N_RECORDS, (
            f"consumed {len(consumed)} of {N_RECORDS} records within {TIMEOUT:.0f}s"
        )
        # Nothing beyond what we produced is in the topic.
        high = sum(
            consumer.get_watermark_offsets(CkTopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        )
        assert high == N_RECORDS
    finally:
        consumer.close()
    _check_round_trip(produced, consumed)


# -- aiokafka -------------------------------------------------------------------------------


async def _aio_produce(bootstrap: str, topic: str) -> list[Rec]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        records = [_record(i) for i in range(N_RECORDS)]
        futures = [await producer.send(topic, key=k, value=v) for k, v in records]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [Rec(m.partition, m.offset, k, v) for m, (k, v) in zip(metas, records, strict=True)]


async def _aio_consume(consumer: AIOKafkaConsumer, limit: int) -> list[Rec]:
    """Read records one by one until ``limit`` records came back (bounded by ``TIMEOUT``)."""
    out: list[Rec] = []

    async def read() -> None:
        while len(out) < limit:
            msg = await consumer.getone()
            out.append(Rec(msg.partition, msg.offset, msg.key, msg.value))

    try:
        await asyncio.wait_for(read(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(
            f"consumed {len(out)} of {limit} records within {TIMEOUT:.0f}s"
        ) from None
    return out


async def _aio_scenario(bootstrap: str, topic: str, group: str) -> None:
    produced = await _aio_produce(bootstrap, topic)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    first_part = 600

    # First member of the group: read 600 records, commit exactly what it read, leave.
    first = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await first.start()
    try:
        read_first = await _aio_consume(first, first_part)
        to_commit: dict[TopicPartition, int] = {}
        for rec in read_first:
            to_commit[TopicPartition(topic, rec.partition)] = rec.offset + 1
        await first.commit(to_commit)
        committed = {tp: await first.committed(tp) for tp in to_commit}
        assert committed == to_commit
    finally:
        await first.stop()

    # Second member of the same group: resumes at the committed offsets, re-reads nothing.
    second = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await second.start()
    try:
        read_second = await _aio_consume(second, N_RECORDS - first_part)
        # Wait briefly for anything beyond: there must be nothing left to read.
        extra = await second.getmany(timeout_ms=1000)
        assert not any(extra.values()), f"read more than {N_RECORDS} records: {extra}"
        ends = await second.end_offsets(tps)
        assert sum(ends.values()) == N_RECORDS
    finally:
        await second.stop()

    start_of_second: dict[int, int] = {}
    for rec in read_second:
        start_of_second.setdefault(rec.partition, rec.offset)
    for partition, offset in start_of_second.items():
        assert offset == to_commit.get(TopicPartition(topic, partition), 0), (
            f"partition {partition}: second consumer started at {offset}, committed was "
            f"{to_commit.get(TopicPartition(topic, partition))}"
        )
    overlap = {(r.partition, r.offset) for r in read_first} & {
        (r.partition, r.offset) for r in read_second
    }
    assert not overlap, f"{len(overlap)} records were read by both consumers"
    _check_round_trip(produced, read_first + read_second)


def test_aiokafka_round_trip_and_group_resume(kafka_bootstrap, new_topic, unique):
    topic = new_topic(".aio", PARTITIONS)
    asyncio.run(_aio_scenario(kafka_bootstrap, topic, f"{unique}.aio-group"))
