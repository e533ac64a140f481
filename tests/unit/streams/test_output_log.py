"""KafkaOutputLog without a broker: murmur2 as Kafka's Java client, and the start offsets."""

from __future__ import annotations

import pytest

from headrace.config import KafkaConfig
from streams.output_log import KafkaOutputLog, murmur2, partition_for


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # the Java client's own test vectors (UtilsTest.testMurmur2)
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_is_the_positive_hash_modulo_the_count() -> None:
    assert partition_for(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    assert {partition_for(f"k{i}".encode(), 5) for i in range(200)} == set(range(5))


class _Ends(KafkaOutputLog):
    """The broker's end offsets from a dict; counts how often it was asked."""

    def __init__(self, ends: dict[int, int]) -> None:
        super().__init__(KafkaConfig(bootstrap_servers="127.0.0.1:1"), "out", 3)
        self.ends = ends
        self.asked = 0

    def _end(self, partition: int) -> int:
        self.asked += 1
        return self.ends[partition]


def test_start_asks_the_broker_once_then_follows_deliveries() -> None:
    log = _Ends({0: 40, 1: 7, 2: 0})
    assert log.start(0) == 40 and log.start(0) == 40 and log.asked == 1
    log.delivered("out", 0, 41)
    log.delivered("out", 0, 45)
    log.delivered("out", 0, 43)  # reports out of order: the offset only grows
    log.delivered("other", 0, 99)  # another topic's message: ignored
    assert log.start(0) == 46 and log.asked == 1
    log.delivered("out", 1, 9)  # known from a delivery: no need to ask
    assert log.start(1) == 10 and log.asked == 1


def test_present_reads_nothing_when_start_is_at_the_end() -> None:
    log = _Ends({0: 12, 1: 0, 2: 0})
    assert log.present(0, 12) == set() and log.present(1, 0) == set()


def test_an_output_topic_needs_partitions() -> None:
    with pytest.raises(ValueError, match="'out': partition count 0"):
        KafkaOutputLog(KafkaConfig(bootstrap_servers="127.0.0.1:1"), "out", 0)
