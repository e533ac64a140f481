"""A source's ``Record`` (what a source hands its runner to encode and produce), and how a key
becomes Kafka key bytes (``encode_key``, used by sources, stages and sinks alike).

Stages do not pass ``Record`` objects: they work on Kafka messages (``streams.stages.base``:
``InMessage``/``OutMessage``, the value decoded by ``schemas.RecordCodec``), and sinks on
``connectors.records.SinkRecord``. What all three share is the wire contract: one record per
message, keyed by ``encode_key`` of the key fields, the event time as the message timestamp.

A record is one Kafka message: ``value`` (a dict, or None for a tombstone), ``key`` (the values
of the configured key fields, in order), ``timestamp_ms`` (event time, the Kafka message
timestamp), ``headers``, ``position`` (where it came from in its source: S3 key + ETag +
line, MySQL timestamp + id, or topic/partition/offset) used for checkpoints and dead
letters, and optionally ``raw`` (the source bytes of the value).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from schemas.jsoncodec import dumps

__all__ = ["Record", "encode_key", "key_of"]


@dataclass(slots=True)
class Record:
    """One record; ``value is None`` means a tombstone (delete) for ``key``."""

    value: dict[str, Any] | None
    key: tuple[Any, ...] | None = None
    timestamp_ms: int | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    position: dict[str, Any] | None = None
    raw: bytes | None = None
    """The value's bytes as read from the source, when it already is one JSON object: a JSON
    encoder may send them unchanged (exact numbers, no re-encoding). None when unknown."""

    def key_bytes(self) -> bytes | None:
        """The Kafka message key (see :func:`encode_key`), or None when the record has no key."""
        return None if self.key is None else encode_key(self.key)


def key_of(value: Mapping[str, Any], fields: Sequence[str]) -> tuple[Any, ...]:
    """The key tuple of ``value`` for the key ``fields``; KeyError names a missing field."""
    try:
        return tuple(value[f] for f in fields)
    except KeyError as exc:
        raise KeyError(f"key field {exc.args[0]!r} missing from record") from None


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    if v is None:
        return ""
    return str(v)


def encode_key(key: Sequence[Any]) -> bytes:
    """Key bytes: one field is its plain text (``42``, ``c0001``, null as empty text);
    several are a JSON array keeping integers, text and null as they are (other values as
    their text), so a sink can read the fields back from a tombstone's key.

    Deterministic, so the same key always lands on the same partition, and readable by any
    consumer (kcat shows ``42``, not an envelope).
    """
    if len(key) == 1:
        return _text(key[0]).encode()
    return dumps([k if k is None or isinstance(k, int | str) else _text(k) for k in key])
