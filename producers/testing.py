"""Helpers for tests and benchmarks of the producers: read a whole topic back, write a
pipeline file for a source. Public so users can check their own sources the same way."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TopicContents", "read_topic", "write_pipeline"]


@dataclass
class TopicContents:
    """Every message of a topic: (key, value, headers dict, timestamp ms), in offset order
    per partition."""

    messages: list[tuple[bytes | None, bytes | None, dict[str, bytes], int]]

    def key_counts(self) -> Counter[bytes | None]:
        return Counter(m[0] for m in self.messages)


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> TopicContents:
    """Read ``topic`` from the beginning to its current end (committed data only)."""
    from confluent_kafka import Consumer, TopicPartition

    from headrace.kafka_clients import watermarks

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{topic}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        parts = sorted(meta.partitions)
        ends = {}
        for p in parts:
            low, high = watermarks(consumer, TopicPartition(topic, p), 30)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[tuple[bytes | None, bytes | None, dict[str, bytes], int]] = []
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.5):
                if m.error():
                    continue
                headers: dict[str, Any] = dict(m.headers() or [])
                out.append((m.key(), m.value(), headers, m.timestamp()[1]))
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            for tp in positions:
                if tp.offset >= ends[tp.partition]:
                    ends.pop(tp.partition)
        if ends:
            raise TimeoutError(f"topic {topic!r}: partitions {sorted(ends)} not read to the end")
        return TopicContents(out)
    finally:
        consumer.close()


def write_pipeline(
    path: Path, name: str, bootstrap: str, sources: dict[str, Any], **extra: Any
) -> Path:
    """Write a pipeline file with ``sources`` (and e.g. ``schemas``); return its path."""
    doc = {"name": name, "kafka": {"bootstrap_servers": bootstrap}, "sources": sources, **extra}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
