"""End-to-end latency: a sink observes message timestamp -> write returned, per written record."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import orjson
from prometheus_client import REGISTRY

from connectors.records import SinkRecord, WriteOutcome
from connectors.runner import SinkRunner
from connectors.sinkmetrics import SinkMetrics
from headrace.metrics import observe_end_to_end


class FakeHistogram:
    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, amount: float) -> None:
        self.values.append(amount)


def test_observes_seconds_since_each_timestamp_skipping_none_and_clamping_skew() -> None:
    hist = FakeHistogram()
    now = 1_700_000_010.0
    stamps = [1_700_000_009_750, None, 1_700_000_000_000, 1_700_000_011_000]
    n = observe_end_to_end(hist, stamps, now)
    assert n == 3
    assert hist.values == [0.25, 10.0, 0.0]  # a timestamp from the future is 0 s, not negative


class _Msg:
    def __init__(self, offset: int, ts_ms: int, value: bytes) -> None:
        self._offset, self._ts, self._value = offset, ts_ms, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "orders.clean"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return f"k{self._offset}".encode()

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)  # TIMESTAMP_CREATE_TIME


class _Consumer:
    def __init__(self, messages: list[_Msg]) -> None:
        self.pending = messages

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        pass

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[_Msg]:
        out, self.pending = self.pending[:num_messages], self.pending[num_messages:]
        return out

    def commit(self, *, offsets: list[Any], asynchronous: bool) -> None:
        pass

    def position(self, partitions: list[Any]) -> list[Any]:
        return []  # nothing known: the runner commits past the records it wrote

    def pause(self, partitions: list[Any]) -> None:
        pass

    def resume(self, partitions: list[Any]) -> None:
        pass

    def assignment(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


class _Producer:
    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        timestamp: int = 0,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        pass

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


class _SlowWriterRejectingOdd:
    """Takes 0.2 s per write; rejects records whose value has an odd ``i``."""

    name = "fake"

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, batch: Sequence[SinkRecord]) -> WriteOutcome:
        time.sleep(0.2)
        outcome = WriteOutcome()
        for index, record in enumerate(batch):
            assert record.value is not None
            if record.value["i"] % 2:
                outcome.reject(index, "odd")
            else:
                outcome.counts["written"] += 1
        return outcome


def _sample(name: str, labels: dict[str, str]) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_the_sink_runner_observes_written_records_from_their_message_timestamp() -> None:
    pipeline = f"e2e{uuid4().hex[:8]}"
    labels = {"pipeline": pipeline, "stage": "orders_sink", "kind": "sink"}
    sent_ms = int(time.time() * 1000) - 1500  # committed at the source 1.5 s ago
    messages = [_Msg(i, sent_ms, orjson.dumps({"i": i})) for i in range(10)]
    messages.append(_Msg(10, sent_ms, b"{not json"))  # a dead letter: never visible
    runner = SinkRunner(
        name="orders_sink",
        topic="orders.clean",
        consumer=_Consumer(messages),
        writer=_SlowWriterRejectingOdd(),
        producer=_Producer(),
        metrics=SinkMetrics(pipeline, "orders_sink"),
        batch_size=100,
        batch_bytes=10**9,
        linger=0.0,
        make_offset=lambda t, p, o: (t, p, o),
    )
    runner.run(max_idle_polls=2)

    count = _sample("headrace_end_to_end_seconds_count", labels)
    total = _sample("headrace_end_to_end_seconds_sum", labels)
    assert count == 5  # the 5 even records; rejected and undecodable ones are not visible
    # each waited 1.5 s before the sink saw it plus the 0.2 s write
    assert 5 * 1.7 <= total < 5 * 3.0
    assert _sample("headrace_end_to_end_seconds_bucket", {**labels, "le": "1.0"}) == 0
    assert _sample("headrace_end_to_end_seconds_bucket", {**labels, "le": "2.0"}) == 5
