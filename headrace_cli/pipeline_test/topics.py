"""Kafka topics in memory, for one simulated run.

A topic has a fixed number of partitions (every topic of a case has the same number, as the
worker creates outputs with its input's count). A message *lands* at a simulated time: it
gets the next offset of its partition and the next number of the run's landing order, and
from then on stages can read it. Where it lands is what Kafka would decide: the partition the
writer set, else murmur2 of the key (``streams.output_log.partition_for``, what the producers
and the worker compute), else partition 0 (a real producer picks one at random; a test needs
one answer). A message without a timestamp gets its landing time, as the broker stamps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.output_log import partition_for
from streams.stages.base import InMessage, OutMessage

__all__ = ["Arrival", "Landed", "Topics"]


@dataclass(frozen=True)
class Arrival:
    """A message a test feeds into a topic at simulated time ``at_ms``."""

    topic: str
    key: bytes | None
    value: bytes | None
    time_ms: int | None  # None: stamped when it lands
    partition: int | None
    headers: tuple[tuple[str, bytes], ...]
    at_ms: int


@dataclass(frozen=True)
class Landed:
    """A message in a simulated topic: what stages read, when it landed, whether its writer
    gave it a timestamp, and its place in the run's landing order."""

    msg: InMessage
    at_ms: int
    stamped: bool
    seq: int


@dataclass
class Topics:
    """Every topic of one run, created on first use with ``partitions`` partitions."""

    partitions: int
    logs: dict[str, list[list[Landed]]] = field(default_factory=dict)
    seq: int = 0

    def log(self, topic: str) -> list[list[Landed]]:
        """The partitions of ``topic`` (messages in offset order)."""
        found = self.logs.get(topic)
        if found is None:
            found = self.logs[topic] = [[] for _ in range(self.partitions)]
        return found

    def land(self, msg: OutMessage, at_ms: int) -> Landed:
        """Append ``msg`` to its topic at simulated time ``at_ms`` (see the module doc)."""
        log = self.log(msg.topic)
        if msg.partition is not None:
            p = msg.partition
        elif msg.key is not None:
            p = partition_for(msg.key, self.partitions)
        else:
            p = 0
        if not 0 <= p < self.partitions:
            raise ValueError(
                f"partition {p} of {msg.topic!r} does not exist (the case has "
                f"{self.partitions} partition(s) per topic)"
            )
        part = log[p]
        stamp = msg.timestamp_ms or 0  # 0: the broker stamps it, as the worker produces it
        stamped = stamp != 0
        landed = Landed(
            InMessage(
                msg.topic,
                p,
                len(part),
                msg.key,
                msg.value,
                stamp if stamped else at_ms,
                tuple(msg.headers),
            ),
            at_ms,
            stamped,
            self.seq,
        )
        self.seq += 1
        part.append(landed)
        return landed

    def arrive(self, arrival: Arrival) -> Landed:
        """Land a message a test feeds in."""
        msg = OutMessage(
            arrival.topic,
            arrival.key,
            arrival.value,
            arrival.time_ms,
            list(arrival.headers),
            arrival.partition,
        )
        return self.land(msg, arrival.at_ms)

    def messages(self, topic: str) -> list[Landed]:
        """Every message of ``topic`` in landing order (all partitions)."""
        if topic not in self.logs:
            return []
        return sorted((m for part in self.logs[topic] for m in part), key=lambda m: m.seq)

    def names(self) -> list[str]:
        """The topics that exist, in name order."""
        return sorted(self.logs)
