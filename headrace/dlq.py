"""Dead letters: a record that cannot be processed goes to ``<topic>.dlq`` and the stage goes on.

The dead letter keeps the original key and bytes (so it can be replayed as it was) and says
why in headers. Header names are part of the public interface (``headrace dlq`` reads them):

================================  =================================================
``headrace.stage``                the source, stage or sink that rejected it
``headrace.error.class``          the exception class, e.g. ``PoisonRecord``
``headrace.error.message``        the reason (never the whole payload, never a secret)
``headrace.position``             JSON source position (S3 key/ETag/line, MySQL ts/id,
                                  or topic/partition/offset)
``headrace.topic``                the topic the record was meant for / read from
================================  =================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

__all__ = [
    "DLQ_SUFFIX",
    "HEADER_ERROR_CLASS",
    "HEADER_ERROR_MESSAGE",
    "HEADER_POSITION",
    "HEADER_STAGE",
    "HEADER_TOPIC",
    "DeadLetter",
    "DeadLetterWriter",
    "LetterProducer",
    "dlq_topic",
]

DLQ_SUFFIX = ".dlq"
HEADER_STAGE = "headrace.stage"
HEADER_ERROR_CLASS = "headrace.error.class"
HEADER_ERROR_MESSAGE = "headrace.error.message"
HEADER_POSITION = "headrace.position"
HEADER_TOPIC = "headrace.topic"
MAX_MESSAGE = 1000


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX


class LetterProducer(Protocol):
    """The part of ``confluent_kafka.Producer`` that sending dead letters uses (its signature:
    ``confluent_kafka.Producer`` satisfies it)."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        *,
        timestamp: int = ...,
        headers: list[tuple[str, str | bytes | None]] | None = ...,
    ) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...


@dataclass(frozen=True)
class DeadLetter:
    """Why one record was rejected, with its original bytes."""

    topic: str
    stage: str
    error_class: str
    message: str
    position: dict[str, Any] | None
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None

    @classmethod
    def from_error(
        cls,
        *,
        topic: str,
        stage: str,
        error: BaseException,
        position: dict[str, Any] | None,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
    ) -> DeadLetter:
        return cls(
            topic, stage, type(error).__name__, str(error), position, key, value, timestamp_ms
        )

    def headers(self) -> list[tuple[str, bytes]]:
        msg = self.message if len(self.message) <= MAX_MESSAGE else self.message[:MAX_MESSAGE] + "…"
        return [
            (HEADER_STAGE, self.stage.encode()),
            (HEADER_ERROR_CLASS, self.error_class.encode()),
            (HEADER_ERROR_MESSAGE, msg.encode()),
            (HEADER_POSITION, orjson.dumps(self.position, default=str)),
            (HEADER_TOPIC, self.topic.encode()),
        ]


class DeadLetterWriter:
    """Produces dead letters to ``<topic>.dlq`` through a confluent-kafka-like producer.

    ``on_sent`` (optional) is called once per dead letter produced, e.g. to count it in a
    metric. Delivery is as durable as the producer's settings (acks=all by default); the caller
    flushes the producer before committing past the rejected record.
    """

    def __init__(
        self, producer: LetterProducer, on_sent: Callable[[DeadLetter], None] | None = None
    ) -> None:
        self._producer = producer
        self._on_sent = on_sent

    def send(self, letter: DeadLetter) -> None:
        headers: list[tuple[str, str | bytes | None]] = list(letter.headers())
        while True:
            try:
                if letter.timestamp_ms is None:
                    self._producer.produce(
                        dlq_topic(letter.topic), value=letter.value, key=letter.key, headers=headers
                    )
                else:
                    self._producer.produce(
                        dlq_topic(letter.topic),
                        value=letter.value,
                        key=letter.key,
                        timestamp=letter.timestamp_ms,
                        headers=headers,
                    )
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain, then retry
        if self._on_sent is not None:
            self._on_sent(letter)
