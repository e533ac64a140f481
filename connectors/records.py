"""What a sink writer receives and returns, and the interface every writer implements.

The runner (one thread) decodes Kafka messages into ``SinkRecord`` values, hands a batch to
``SinkWriter.write`` and commits the batch's offsets only after ``write`` returned. A writer
never commits, never talks to Kafka, and reports per-record rejections instead of raising.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from headrace.errors import HeadraceError

__all__ = [
    "FatalSinkError",
    "SinkRecord",
    "SinkWriter",
    "WriteOutcome",
    "key_parts",
]


def key_parts(key: bytes, fields: Sequence[str]) -> dict[str, Any]:
    """A tombstone's key read back as ``{field: value}`` for the topic's key ``fields``
    (``headrace.config.keys.key_fields``): the inverse of ``schemas.encode_key``. One field is
    the key's text (the caller decides whether a number-like text also stands for a number);
    several are a JSON array of as many values. ValueError says why the key does not fit."""
    text = key.decode("utf-8", errors="replace")
    if len(fields) == 1:
        return {fields[0]: text}
    try:
        parts = orjson.loads(text)
    except orjson.JSONDecodeError:
        parts = None
    if not isinstance(parts, list) or len(parts) != len(fields):
        raise ValueError(f"key {text[:200]!r} is not a JSON array of [{', '.join(fields)}]")
    return dict(zip(fields, parts, strict=True))


class FatalSinkError(HeadraceError):
    """The sink cannot go on (bad credentials, missing table with ``create: false``...).

    The runner stops without committing the batch in hand; the CLI exits 1 with the message.
    """


@dataclass(slots=True)
class SinkRecord:
    """One decoded Kafka message; ``value is None`` is a tombstone for ``key``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any] | None
    raw: bytes | None = None
    timestamp_ms: int | None = None

    @property
    def position(self) -> dict[str, Any]:
        """Where the record was read: topic, partition and offset (for dead letters)."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    @property
    def size(self) -> int:
        """Payload bytes (key + value), used to bound batches."""
        return len(self.key or b"") + len(self.raw or b"")


@dataclass
class WriteOutcome:
    """What one ``write`` did: counts by outcome, and the records it refused, with why.

    ``counts`` keys are fixed words (``written``, ``deleted``, ``skipped_older``,
    ``skipped_existing``, ``superseded``...). ``rejected`` maps an index into the batch to
    the reason; those records go to the dead-letter topic, the rest are written.
    """

    counts: Counter[str] = field(default_factory=Counter)
    rejected: dict[int, str] = field(default_factory=dict)

    def reject(self, index: int, reason: str) -> None:
        self.rejected[index] = reason


class SinkWriter(Protocol):
    """A destination. Called from the runner's thread only, one call at a time.

    - ``open()`` prepares the destination (indexes, table); raises ``FatalSinkError``.
    - ``write(batch)`` writes every record it does not reject, idempotently: writing the same
      batch twice leaves the same data. Raises ``RetriableError`` (the runner backs off and
      calls again with the same batch) or ``FatalSinkError``. Returning means durable.
    - ``close()`` releases connections.
    """

    name: str

    def open(self) -> None: ...

    def write(self, batch: Sequence[SinkRecord]) -> WriteOutcome: ...

    def close(self) -> None: ...
