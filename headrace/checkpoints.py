"""Source checkpoints in a compacted Kafka topic: where each source resumes after a restart.

One topic per pipeline, ``_headrace.<pipeline>.checkpoints`` (1 partition,
``cleanup.policy=compact``), keyed by source name; the value is JSON
``{"v": 1, "source": NAME, "state": {...}, "at_ms": N}``, and a tombstone (null value) means
"start over". The state is whatever the source gave (S3: done objects + ETags and the current
object/line; MySQL: the timestamp/id watermark). The runner writes a checkpoint only after
the broker acknowledged every record it covers, so a restart never leaves a gap.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from headrace.errors import HeadraceError
from headrace.kafka_clients import watermarks

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "CheckpointStore",
    "checkpoint_topic",
    "decode_checkpoint",
    "encode_checkpoint",
]

CHECKPOINT_VERSION = 1


class CheckpointError(HeadraceError):
    """The checkpoint topic could not be read or holds something we cannot resume from."""


class _Producer(Protocol):
    def produce(self, topic: str, value: bytes | None = ..., key: bytes | None = ...) -> None: ...
    def flush(self, timeout: float = ...) -> int: ...


def checkpoint_topic(pipeline: str) -> str:
    """The compacted topic holding the checkpoints of ``pipeline``'s sources."""
    return f"_headrace.{pipeline}.checkpoints"


def encode_checkpoint(source: str, state: dict[str, Any], *, at_ms: int | None = None) -> bytes:
    """The message value of ``state`` (JSON; Decimal and datetimes as text)."""
    stamp = int(time.time() * 1000) if at_ms is None else at_ms
    return orjson.dumps(
        {"v": CHECKPOINT_VERSION, "source": source, "state": state, "at_ms": stamp},
        default=str,
    )


def decode_checkpoint(source: str, data: bytes | None) -> dict[str, Any] | None:
    """The state in a checkpoint value (None for a tombstone); CheckpointError if unreadable."""
    if data is None:
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint of source {source!r} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint of source {source!r} has an unknown version {doc.get('v')!r} "
            f"(expected {CHECKPOINT_VERSION}); run `headrace produce {source} --reset` "
            "to start over"
        )
    state = doc.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint of source {source!r} has no state object")
    return state


class CheckpointStore:
    """Reads and writes one source's checkpoint. ``client_conf`` is librdkafka connection
    settings (bootstrap, security); the store makes its own consumer for :meth:`load`."""

    def __init__(self, client_conf: dict[str, Any], pipeline: str, source: str) -> None:
        self._conf = dict(client_conf)
        self.pipeline = pipeline
        self.source = source
        self.topic = checkpoint_topic(pipeline)
        self.key = source.encode()

    def ensure_topic(self, timeout: float = 30.0) -> None:
        """Create the compacted checkpoint topic when missing."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self._conf)
        if self.topic in admin.list_topics(timeout=timeout).topics:
            return
        new = NewTopic(self.topic, 1, 1, config={"cleanup.policy": "compact"})
        for fut in admin.create_topics([new], operation_timeout=timeout).values():
            try:
                fut.result(timeout=timeout)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise CheckpointError(
                        f"cannot create checkpoint topic {self.topic!r}: {exc}"
                    ) from None
        # A new topic is not usable until its partition has a leader in the metadata; reading
        # it earlier fails with "Unknown partition" (seen on the first start of a pipeline).
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            meta = admin.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
            if meta is not None and meta.error is None and 0 in meta.partitions:
                if meta.partitions[0].leader >= 0:
                    return
            time.sleep(0.2)
        raise CheckpointError(
            f"checkpoint topic {self.topic!r} was created but has no leader after {timeout:.0f}s"
        )

    def load(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """The last committed state of this source, or None when there is none (or a reset)."""
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        self.ensure_topic(timeout)
        consumer = Consumer(
            {
                **self._conf,
                "group.id": f"_headrace.checkpoint-reader.{self.pipeline}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        try:
            tp = TopicPartition(self.topic, 0)
            low, high = watermarks(consumer, tp, timeout)
            if high <= low:
                return None
            consumer.assign([TopicPartition(self.topic, 0, low)])
            last: bytes | None = None
            deadline = time.monotonic() + timeout
            while True:
                for m in consumer.consume(1000, 0.5):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise CheckpointError(f"reading checkpoint topic {self.topic!r}: {err}")
                    if m.key() == self.key:
                        last = m.value()
                # transaction markers take offsets too: ask where the consumer really is
                if consumer.position([tp])[0].offset >= high:
                    break
                if time.monotonic() > deadline:
                    raise CheckpointError(
                        f"reading checkpoint topic {self.topic!r} timed out after {timeout:.0f}s"
                    )
            return decode_checkpoint(self.source, last) if last is not None else None
        finally:
            consumer.close()

    def save(self, producer: Any, state: dict[str, Any], on_delivery: Any | None = None) -> None:
        """Produce ``state`` (the caller owns delivery: flush or a transaction commit;
        ``on_delivery(err, msg)`` reports it)."""
        value = encode_checkpoint(self.source, state)
        if on_delivery is None:
            producer.produce(self.topic, value=value, key=self.key)
        else:
            producer.produce(self.topic, value=value, key=self.key, on_delivery=on_delivery)

    def reset(self, producer: _Producer, timeout: float = 30.0) -> None:
        """Write a tombstone and wait for it: the next start begins from scratch."""
        self.ensure_topic(timeout)
        producer.produce(self.topic, value=None, key=self.key)
        if producer.flush(timeout) != 0:
            raise CheckpointError(f"reset of {self.source!r} was not acknowledged in {timeout}s")
