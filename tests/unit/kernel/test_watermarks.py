"""``headrace.kafka_clients.watermarks``: a partition without a leader yet is asked again."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from headrace.kafka_clients import watermarks


class _Consumer:
    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.asked = 0

    def get_watermark_offsets(self, tp: Any, timeout: float, cached: bool) -> tuple[int, int]:
        assert cached is False
        self.asked += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 3, 42


def test_a_partition_without_a_leader_yet_is_asked_again() -> None:
    consumer = _Consumer([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])
    assert watermarks(consumer, "tp", timeout=5) == (3, 42)
    assert consumer.asked == 3


def test_other_errors_and_a_leader_missing_past_the_timeout_raise() -> None:
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        watermarks(_Consumer([KafkaError.TOPIC_AUTHORIZATION_FAILED]), "tp", timeout=5)
    with pytest.raises(KafkaException, match="NOT_LEADER"):
        watermarks(_Consumer([KafkaError.NOT_LEADER_FOR_PARTITION] * 100), "tp", timeout=0.3)
