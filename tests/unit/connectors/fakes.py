"""Test doubles for the sink runner and writers: a Kafka consumer, producer and clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from connectors.records import SinkRecord, WriteOutcome
from headrace.errors import RetriableError


class Msg:
    def __init__(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ):
        self._t, self._p, self._o, self._k, self._v = topic, partition, offset, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return (1, 1000)


class Position(NamedTuple):
    """A ``TopicPartition`` with an offset, as ``Consumer.position`` returns it."""

    topic: str
    partition: int
    offset: int


class Part:
    """A ``TopicPartition`` stand-in (what ``assignment()`` returns)."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Part) and (self.topic, self.partition) == (
            other.topic,
            other.partition,
        )

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))

    def __repr__(self) -> str:
        return f"{self.topic}[{self.partition}]"


class FakeClock:
    """Time that passes only when told (``advance``), e.g. by a consume that waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class FakeConsumer:
    """Hands out ``messages`` in order, ``per_poll`` at a time, from unpaused partitions only;
    records commits, pauses and polls. With a ``clock``, a poll that returns nothing waits its
    whole ``timeout`` on that clock, as the real consumer does. ``markers``: (partition,
    offset) of transaction markers, which ``position`` passes as librdkafka's does once the
    record before them was consumed."""

    def __init__(
        self,
        messages: list[Msg],
        per_poll: int = 1000,
        partitions: Sequence[int] = (0,),
        clock: FakeClock | None = None,
        markers: Sequence[tuple[int, int]] = (),
    ) -> None:
        self.messages = list(messages)
        self.markers = set(markers)
        self.positions: dict[int, int] = {}
        self.per_poll = per_poll
        self.assigned = [Part("t", p) for p in partitions]
        self.clock = clock
        self.commits: list[list[tuple[int, int]]] = []
        self.paused: list[Any] = []
        self.resumed: list[Any] = []
        self.polls: list[tuple[float, frozenset[int]]] = []
        self.closed = False
        self.callbacks: dict[str, Any] = {}

    def paused_now(self) -> set[int]:
        now: set[int] = set()
        for parts in self.paused:
            now |= {p.partition for p in parts}
        for parts in self.resumed:
            now -= {p.partition for p in parts}
        return now

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Msg]:
        paused = self.paused_now()
        self.polls.append((timeout, frozenset(paused)))
        n = min(num_messages, self.per_poll)
        out = [m for m in self.messages if m.partition() not in paused][:n]
        self.messages = [m for m in self.messages if m not in out]
        for m in out:
            at = m.offset() + 1
            while (m.partition(), at) in self.markers:
                at += 1
            self.positions[m.partition()] = at
        if not out and self.clock is not None:
            self.clock.advance(timeout)
        return out

    def commit(self, *, offsets: list[Any], asynchronous: bool) -> None:
        self.commits.append([(o[1], o[2]) for o in offsets])

    def position(self, partitions: list[Any]) -> list[Any]:
        """As ``Consumer.position``, asked with ``(topic, partition, offset)`` tuples."""
        return [Position(t, p, self.positions.get(p, -1001)) for t, p, _o in partitions]

    def pause(self, partitions: list[Any]) -> None:
        self.paused.append(partitions)

    def resume(self, partitions: list[Any]) -> None:
        self.resumed.append(partitions)

    def assignment(self) -> list[Any]:
        return list(self.assigned)

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        timestamp: int = 0,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        self.sent.append(
            {"topic": topic, "value": value, "key": key, "headers": dict(headers or [])}
        )

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


class ScriptedWriter:
    """A writer that fails ``failures`` times (retriable) and then stores every record."""

    name = "w"

    def __init__(
        self, failures: int = 0, reject: set[bytes] | None = None, log: list[str] | None = None
    ):
        self.failures = failures
        self.reject = reject or set()
        self.stored: dict[bytes | None, Any] = {}
        self.calls = 0
        self.log = log if log is not None else []

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, batch: Sequence[SinkRecord]) -> WriteOutcome:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RetriableError("down", retry_after=0.0)
        out = WriteOutcome()
        for i, r in enumerate(batch):
            if r.key in self.reject:
                out.reject(i, "bad")
            else:
                self.stored[r.key] = r.value
                out.counts["written"] += 1
        self.log.append(f"write {len(batch)}")
        return out


def rec(
    key: str | None, value: dict[str, Any] | None, offset: int = 0, partition: int = 0
) -> SinkRecord:
    raw = None if value is None else orjson.dumps(value)
    return SinkRecord("t", partition, offset, None if key is None else key.encode(), value, raw)


class QuietMetrics:
    """Metrics that count in memory, leaving the process-wide Prometheus registry alone
    (other tests read its totals)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def _add(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def records(self, counts: Any) -> None:
        for k, v in counts.items():
            self._add(k, v)

    def batch(self, size: int, seconds: float) -> None:
        self._add("batches")

    def visible(self, timestamps_ms: Any) -> None:
        self._add("visible", sum(1 for _ in timestamps_ms))

    def dead_letter(self) -> None:
        self._add("dlq")

    def retry(self, reason: str) -> None:
        self._add("retries")

    def throttle(self) -> None:
        self._add("throttles")

    def committed(self) -> None:
        self._add("commits")

    def lag(self, topic: str, messages: int) -> None:
        self.counts["lag"] = messages
