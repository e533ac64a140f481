"""produce_waiting: a full local queue is waited out, not an error."""

from __future__ import annotations

from typing import Any

from headrace.kafka_clients import produce_waiting


class FullTwice:
    def __init__(self) -> None:
        self.full = 2
        self.polls: list[float] = []
        self.sent: list[tuple[Any, ...]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None, **kw: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.sent.append((topic, value, key, kw))

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        return 0


def test_a_full_queue_is_served_until_the_record_fits() -> None:
    producer = FullTwice()
    produce_waiting(producer, "t", b"v", b"k", timestamp=5)  # type: ignore[arg-type]
    assert producer.sent == [("t", b"v", b"k", {"timestamp": 5})]
    assert producer.polls == [0.1, 0.1]
