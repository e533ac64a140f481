"""Dead letters keep the original bytes and say why in headers."""

from __future__ import annotations

from typing import Any

import orjson

from headrace.dlq import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_MESSAGE,
    HEADER_POSITION,
    HEADER_STAGE,
    HEADER_TOPIC,
    DeadLetter,
    DeadLetterWriter,
    dlq_topic,
)
from headrace.errors import PoisonRecord


class FakeProducer:
    def __init__(self, full_times: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.full_times = full_times
        self.polls = 0

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        timestamp: int | None = None,  # None: not passed
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        if self.full_times:
            self.full_times -= 1
            raise BufferError("queue full")
        sent: dict[str, Any] = {
            "topic": topic,
            "value": value,
            "key": key,
            "headers": dict(headers or []),
        }
        if timestamp is not None:
            sent["timestamp"] = timestamp
        self.sent.append(sent)

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        return 0


def _letter(**over: Any) -> DeadLetter:
    args: dict[str, Any] = {
        "topic": "orders.raw",
        "stage": "orders_db",
        "error": PoisonRecord("field 'price': not a decimal", field="price"),
        "position": {"table": "orders", "id": 7},
        "key": b"7",
        "value": b'{"price":"x"}',
        "timestamp_ms": 1700000000000,
    }
    args.update(over)
    return DeadLetter.from_error(**args)


def test_dead_letter_goes_to_the_dlq_topic_with_headers() -> None:
    producer = FakeProducer()
    seen: list[DeadLetter] = []
    DeadLetterWriter(producer, on_sent=seen.append).send(_letter())
    [msg] = producer.sent
    assert msg["topic"] == dlq_topic("orders.raw") == "orders.raw.dlq"
    assert msg["key"] == b"7" and msg["value"] == b'{"price":"x"}'
    assert msg["timestamp"] == 1700000000000
    h = msg["headers"]
    assert h[HEADER_STAGE] == b"orders_db"
    assert h[HEADER_ERROR_CLASS] == b"PoisonRecord"
    assert h[HEADER_ERROR_MESSAGE] == b"field 'price': not a decimal"
    assert orjson.loads(h[HEADER_POSITION]) == {"table": "orders", "id": 7}
    assert h[HEADER_TOPIC] == b"orders.raw"
    assert len(seen) == 1


def test_a_full_local_queue_is_waited_out_not_dropped() -> None:
    producer = FakeProducer(full_times=3)
    DeadLetterWriter(producer).send(_letter())
    assert len(producer.sent) == 1
    assert producer.polls == 3


def test_long_messages_are_cut() -> None:
    letter = _letter(error=ValueError("x" * 5000))
    message = dict(letter.headers())[HEADER_ERROR_MESSAGE].decode()
    assert len(message) <= 1001
    assert message.endswith("…")


def test_tombstones_and_missing_positions_are_fine() -> None:
    producer = FakeProducer()
    DeadLetterWriter(producer).send(_letter(value=None, position=None, timestamp_ms=None))
    [msg] = producer.sent
    assert msg["value"] is None
    assert "timestamp" not in msg
    assert orjson.loads(msg["headers"][HEADER_POSITION]) is None
