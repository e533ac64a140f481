"""Messages in and out of a stage processor, and the processor interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from headrace.dlq import DeadLetter
from schemas import RecordCodec

__all__ = [
    "HEADER_LATENESS",
    "HEADER_SOURCE",
    "JSON_CODEC",
    "BatchOutput",
    "InMessage",
    "OutMessage",
    "OutputLog",
    "StageDefaults",
    "StageProcessor",
    "StateWrite",
    "dead_letter",
    "source_position",
    "upstream_source",
]

HEADER_LATENESS = "headrace.lateness_ms"
HEADER_SOURCE = "headrace.source"
"""Set by a records stage on each output: ``where|offset|index``, the position of the input
that produced it, so a stateful stage downstream can drop the duplicates a replay re-sends.

``where`` names the partition the position belongs to, then every partition the record went
through since: ``topic|partition`` for a records stage reading a topic without the header,
and ``<upstream where>><input topic|partition>`` for a stage (records or repartition) whose
input has it. Positions of one ``where`` arrive in order (each hop reads one partition in
order and writes in order), so a position at or below the last one seen is a duplicate. The
first records stage's position goes on unchanged along a chain, so its replay (re-sent
outputs at new offsets) is dropped however many records stages follow. ``index`` is the
output's index among its input's outputs, one ``.``-separated level per records stage:
``0``, ``0.0``, ``2.1``."""


def upstream_source(msg: InMessage) -> tuple[bytes, bytes, bytes] | None:
    """``msg``'s HEADER_SOURCE as (where, offset, index), or None: absent, or not of the form
    above (a header set by someone else is ignored, never a reason to drop a record)."""
    raw = msg.header(HEADER_SOURCE)
    if raw is None:
        return None
    parts = raw.rsplit(b"|", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    if not (parts[2].isdigit() or all(level.isdigit() for level in parts[2].split(b"."))):
        return None
    return parts[0], parts[1], parts[2]


def source_position(index: bytes, offset: bytes) -> tuple[int, ...]:
    """The comparable position of a parsed HEADER_SOURCE: (offset, index levels...)."""
    if b"." in index:
        return (int(offset), *map(int, index.split(b".")))
    return (int(offset), int(index))


StateWrite = tuple[Any, Any]
"""(table key, value); value None deletes the key (a changelog tombstone)."""


@dataclass(slots=True)
class InMessage:
    """One input message as read from Kafka (not frozen: a frozen init costs ~1 us per
    message, the hottest line of a stage; treat it as read-only)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        """The last header called ``name``, or None."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    def position(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(slots=True)
class OutMessage:
    """One message to produce (not frozen, for speed; treat it as read-only)."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None


@dataclass
class BatchOutput:
    """What one batch produced. ``wait_s``: sleep before producing ``messages`` (rate limit).

    The runtime persists ``state`` first, then produces ``messages`` and ``dead``, then, once
    those are acknowledged, persists ``after`` (e.g. tombstones for entries kept only until
    the outputs they describe are safely out)."""

    messages: list[OutMessage] = field(default_factory=list)
    dead: list[OutMessage] = field(default_factory=list)
    state: list[StateWrite] = field(default_factory=list)
    after: list[StateWrite] = field(default_factory=list)
    wait_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + n


def dead_letter(
    stage: str,
    msg: InMessage,
    error: BaseException,
    extra: list[tuple[str, bytes]] | None = None,
    *,
    topic: str | None = None,
) -> OutMessage:
    """The DLQ message for ``msg`` (original key and bytes, headers naming stage and error),
    to ``<topic>.dlq``: ``topic`` is the stage's ``from`` when ``msg`` was read from an
    internal repartition topic (the position still says where it was read), else
    ``msg.topic``."""
    topic = topic or msg.topic
    letter = DeadLetter.from_error(
        topic=topic,
        stage=stage,
        error=error,
        position=msg.position(),
        key=msg.key,
        value=msg.value,
        timestamp_ms=msg.timestamp_ms,
    )
    return OutMessage(
        topic + ".dlq", msg.key, msg.value, msg.timestamp_ms, letter.headers() + (extra or [])
    )


class OutputLog(Protocol):
    """Where a stage's messages land in its output topic, and reading them back (see
    ``streams.output_log``, which implements it for Kafka)."""

    def partition(self, key: bytes) -> int:
        """The output partition for ``key``."""
        ...

    def start(self, partition: int) -> int:
        """An offset at or below that of any message produced to ``partition`` from now on."""
        ...

    def present(self, partition: int, start: int) -> set[tuple[bytes | None, bytes | None]]:
        """(key, value) of the messages in ``partition`` from ``start`` to its current end."""
        ...


class StageProcessor(Protocol):
    """A stage's batch logic. ``process`` gets messages of one partition in offset order."""

    name: str
    source: str
    codec: RecordCodec

    def process(self, partition: int, batch: list[InMessage], wall_ms: int = 0) -> BatchOutput: ...

    def tick(self, wall_ms: int, caught_up: frozenset[int] = frozenset()) -> BatchOutput: ...

    def restore(self, partition: int, state: dict[Any, Any]) -> None: ...

    def state_size(self) -> int: ...

    def batch_limit(self) -> int | None:
        """Most input records one batch may hold (None: no limit beyond the runner's)."""
        ...


JSON_CODEC = RecordCodec()
"""A stage's codec until the worker gives it the pipeline's (JSON only: no registry)."""


class StageDefaults:
    """What a stage without timers, windows or a batch limit does: nothing. Stages inherit
    it and override only what they have (``StageProcessor`` lists the methods).

    ``codec`` reads input values and writes output values; the worker sets it to one
    ``RecordCodec`` on the pipeline's schema registry, so Avro inputs decode by schema id."""

    codec: RecordCodec = JSON_CODEC

    def decode(self, msg: InMessage) -> dict[str, Any] | None:
        """The record of ``msg`` (None for a tombstone); ValueError when it is not one."""
        return None if msg.value is None else self.codec.decode(msg.value)

    def tick(self, wall_ms: int, caught_up: frozenset[int] = frozenset()) -> BatchOutput:
        return BatchOutput()

    def restore(self, partition: int, state: dict[Any, Any]) -> None:
        return None

    def state_size(self) -> int:
        """Open window entries (``headrace_window_state_keys``): none. (A rank stage once
        counted its members here, and ``run --until-idle`` never saw its windows closed.)"""
        return 0

    def batch_limit(self) -> int | None:
        return None
