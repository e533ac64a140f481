"""What a case produced, as the test file writes it: records, dead letters, sink operations,
and what each rate limit did.

Every item is a plain mapping (``values`` says how keys, times and values are written):

- a record: ``key``, ``value`` (or ``raw``, the text of bytes that are not JSON), ``time``
  (only when its writer stamped it; the broker stamps the others), ``partition``,
  ``headers`` (text) and ``at`` (simulated time it landed);
- a dead letter (from every ``<topic>.dlq``, sinks' included): ``topic`` (where the record
  was read or meant to go), ``stage`` (the source, stage or sink that rejected it),
  ``error`` (the exception class), ``reason`` (the message), and the record's ``key``,
  ``value`` or ``raw``, ``time``;
- a sink operation: see ``sinks``.

``SHOWN`` names the keys reports show and ``--update`` writes, per kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from headrace.dlq import HEADER_ERROR_CLASS, HEADER_ERROR_MESSAGE, HEADER_STAGE, HEADER_TOPIC
from headrace_cli.pipeline_test.engine import RateBatch
from headrace_cli.pipeline_test.topics import Landed, Topics
from headrace_cli.pipeline_test.values import decode_json, duration_view, key_view, time_view

__all__ = ["SHOWN", "Outcome", "dead_letter_view", "rate_view", "record_view"]

SHOWN: dict[str, tuple[str, ...]] = {
    "record": ("key", "value", "raw", "time"),
    "dead": ("topic", "stage", "reason", "key", "value", "raw"),
    "op": ("op", "id", "key", "doc", "item", "guard"),
}


def _body(view: dict[str, Any], value: bytes | None) -> None:
    if value is None:
        view["value"] = None
        return
    decoded, text = decode_json(value)
    if text is None and isinstance(decoded, dict):
        view["value"] = decoded
    else:
        view["raw"] = value.decode("utf-8", errors="replace")


def record_view(landed: Landed) -> dict[str, Any]:
    """A message as the test file writes a record (see the module doc)."""
    msg = landed.msg
    view: dict[str, Any] = {"key": key_view(msg.key)}
    _body(view, msg.value)
    if landed.stamped:
        view["time"] = time_view(msg.timestamp_ms)
    view["partition"] = msg.partition
    view["headers"] = {k: v.decode("utf-8", errors="replace") for k, v in msg.headers}
    view["at"] = duration_view(landed.at_ms)
    return view


def dead_letter_view(landed: Landed) -> dict[str, Any]:
    """A message of a ``.dlq`` topic as the test file writes a dead letter."""
    msg = landed.msg
    head = {k: v.decode("utf-8", errors="replace") for k, v in msg.headers}
    view: dict[str, Any] = {
        "topic": head.get(HEADER_TOPIC, msg.topic.removesuffix(".dlq")),
        "stage": head.get(HEADER_STAGE),
        "error": head.get(HEADER_ERROR_CLASS),
        "reason": head.get(HEADER_ERROR_MESSAGE, ""),
        "key": key_view(msg.key),
    }
    _body(view, msg.value)
    view["time"] = time_view(msg.timestamp_ms)
    view["at"] = duration_view(landed.at_ms)
    return view


def rate_view(batches: list[RateBatch]) -> dict[str, Any]:
    """What one stage's rate limit did: ``sent``, ``delayed``, ``shed`` in all, and the
    ``timeline`` of what left when (one step per simulated time)."""
    steps: dict[int, dict[str, int]] = {}
    for b in batches:
        if b.sent:
            step = steps.setdefault(b.decided_ms + b.wait_ms, {"sent": 0, "shed": 0})
            step["sent"] += b.sent
        if b.shed:
            step = steps.setdefault(b.decided_ms, {"sent": 0, "shed": 0})
            step["shed"] += b.shed
    timeline = []
    for at in sorted(steps):
        entry: dict[str, Any] = {"at": duration_view(at)}
        entry.update({k: v for k, v in steps[at].items() if v})
        timeline.append(entry)
    return {
        "sent": sum(b.sent for b in batches),
        "delayed": sum(b.sent for b in batches if b.wait_ms > 0),
        "shed": sum(b.shed for b in batches),
        "timeline": timeline,
    }


@dataclass
class Outcome:
    """Everything one case produced."""

    topics: Topics
    sinks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rate: dict[str, list[RateBatch]] = field(default_factory=dict)

    def records(self, topic: str) -> list[dict[str, Any]]:
        """The records of ``topic`` in landing order."""
        return [record_view(m) for m in self.topics.messages(topic)]

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter, in landing order."""
        dead = [
            m for t in self.topics.names() if t.endswith(".dlq") for m in self.topics.messages(t)
        ]
        return [dead_letter_view(m) for m in sorted(dead, key=lambda m: m.seq)]

    def rate_limit(self, stage: str) -> dict[str, Any]:
        """What ``stage``'s rate limit did (``rate_view``)."""
        return rate_view(self.rate.get(stage, []))
