"""Reading and replaying dead-letter topics (``headrace dlq list|show|replay``).

``read_dead_letters`` reads a ``<topic>.dlq`` from its start up to the high watermark seen when
it was called (a snapshot: it never waits for new letters). ``replay`` produces each letter's
original key and bytes back to the topic it was meant for (``headrace.topic`` header) and
commits its progress under the consumer group ``headrace-dlq-replay.<topic>``, so running it
twice replays nothing twice; ``--from-start`` ignores that progress.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from headrace.dlq import (
    DLQ_SUFFIX,
    HEADER_ERROR_CLASS,
    HEADER_ERROR_MESSAGE,
    HEADER_POSITION,
    HEADER_STAGE,
    HEADER_TOPIC,
)
from headrace.kafka_clients import consumer_config, producer_config
from headrace.watchdog import deadline_call

if TYPE_CHECKING:
    from headrace.config import KafkaConfig

__all__ = ["StoredLetter", "dlq_name", "read_dead_letters", "replay"]


@dataclass(frozen=True)
class StoredLetter:
    """One message of a dead-letter topic, decoded."""

    partition: int
    offset: int
    stage: str
    error_class: str
    message: str
    position: Any
    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None


def dlq_name(topic: str) -> str:
    """Accept ``orders.raw`` or ``orders.raw.dlq``; return the dead-letter topic name."""
    return topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX


def _decode(msg: Any) -> StoredLetter:
    headers = {k: v for k, v in (msg.headers() or [])}

    def text(name: str) -> str:
        raw = headers.get(name)
        return raw.decode(errors="replace") if isinstance(raw, bytes) else ""

    try:
        position = orjson.loads(headers.get(HEADER_POSITION) or b"null")
    except orjson.JSONDecodeError:
        position = text(HEADER_POSITION)
    ts_type, ts = msg.timestamp()
    return StoredLetter(
        partition=msg.partition(),
        offset=msg.offset(),
        stage=text(HEADER_STAGE),
        error_class=text(HEADER_ERROR_CLASS),
        message=text(HEADER_ERROR_MESSAGE),
        position=position,
        topic=text(HEADER_TOPIC) or msg.topic().removesuffix(DLQ_SUFFIX),
        key=msg.key(),
        value=msg.value(),
        timestamp_ms=ts if ts_type else None,
    )


def read_dead_letters(
    kafka: KafkaConfig,
    topic: str,
    *,
    group: str | None = None,
    from_start: bool = True,
    timeout: float = 10.0,
) -> Iterator[StoredLetter]:
    """Yield the letters of ``dlq_name(topic)`` present now, partition by partition in order.

    With ``group`` and not ``from_start``, start after that group's committed offsets.
    Raises LookupError if the dead-letter topic does not exist.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    name = dlq_name(topic)
    no_eof: dict[str, Any] = {"enable.partition.eof": False}
    consumer = Consumer(consumer_config(kafka, group or "headrace-dlq-reader", **no_eof))
    try:
        meta = consumer.list_topics(name, timeout=timeout).topics.get(name)
        if meta is None or meta.error is not None or not meta.partitions:
            raise LookupError(f"dead-letter topic {name!r} does not exist (no dead letters yet)")
        parts = sorted(meta.partitions)
        starts: dict[int, int] = {}
        if group and not from_start:
            for tp in consumer.committed([TopicPartition(name, p) for p in parts], timeout):
                starts[tp.partition] = tp.offset
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)
            start = starts.get(p, OFFSET_BEGINNING)
            if start < 0:
                start = low
            if start >= high:
                continue
            consumer.assign([TopicPartition(name, p, start)])
            idle_polls = 0
            # Stop at the high watermark seen at the start. The position, not the last
            # message's offset, decides: the last offsets may be transaction markers that are
            # never delivered. Ten empty polls in a row also end the partition.
            while idle_polls < 10:
                batch = consumer.consume(500, 1.0)
                idle_polls = 0 if batch else idle_polls + 1
                for msg in batch:
                    if msg.error() is None and (msg.offset() or 0) < high:
                        yield _decode(msg)
                position = consumer.position([TopicPartition(name, p)])[0].offset
                if position >= high:
                    break
    finally:
        consumer.close()


def replay(
    kafka: KafkaConfig,
    topic: str,
    *,
    stage: str | None = None,
    from_start: bool = False,
    dry_run: bool = False,
) -> tuple[int, int]:
    """Produce dead letters back to their topics; return (replayed, skipped by ``stage``).

    Progress is committed per partition only after the producer acknowledged every replayed
    record, so an interrupted replay resumes without loss (at worst a letter is sent twice,
    which idempotent sinks absorb).
    """
    from confluent_kafka import Consumer, Producer, TopicPartition

    name = dlq_name(topic)
    group = f"headrace-dlq-replay.{name.removesuffix(DLQ_SUFFIX)}"
    producer = Producer(producer_config(kafka))
    replayed = skipped = 0
    last: dict[int, int] = {}
    for letter in read_dead_letters(kafka, name, group=group, from_start=from_start):
        last[letter.partition] = letter.offset
        if stage and letter.stage != stage:
            skipped += 1
            continue
        replayed += 1
        if dry_run:
            continue
        kwargs: dict[str, Any] = {}
        if letter.timestamp_ms is not None:
            kwargs["timestamp"] = letter.timestamp_ms
        producer.produce(
            letter.topic,
            value=letter.value,
            key=letter.key,
            headers=[
                ("headrace.replayed_from", f"{name}:{letter.partition}:{letter.offset}".encode())
            ],
            **kwargs,
        )
        producer.poll(0)
    if dry_run or not last:
        return replayed, skipped
    if producer.flush(60) != 0:
        raise RuntimeError(
            "Kafka did not acknowledge every replayed record within 60 s; "
            "nothing was marked as replayed, run the replay again"
        )
    committer = Consumer(consumer_config(kafka, group))
    offsets = [TopicPartition(name, p, o + 1) for p, o in last.items()]
    # librdkafka's synchronous commit has no deadline of its own (issue #19)
    deadline_call(
        lambda: committer.commit(offsets=offsets, asynchronous=False),
        60.0,
        name="dlq-replay-commit",
        wedged=(
            f"the replay of {name!r} was sent, but committing its progress (group {group!r}) "
            "did not return in 60 s (is the group coordinator reachable?); run the replay "
            "again once Kafka is reachable (the records are sent again)"
        ),
    )
    committer.close()
    return replayed, skipped
