"""Lookup join state: the latest value per key of a topic, kept in a changelog-backed table.

``LookupRunner`` reads ``lookup.table_from`` through its own ``BatchTopic`` (raw bytes) and
keeps ``message key bytes -> decoded value`` (a tombstone deletes) in the table
``<stage>-lookup``, written once per batch. ``get(key bytes)`` is what the stage's
``RecordsStage`` calls; the key bytes are ``schemas.encode_key`` of the ``on`` fields, the
same bytes a headrace source writes as the message key.
"""

from __future__ import annotations

from typing import Any

import faust
import orjson

from headrace.config import Lookup
from streams.batch_topic import BatchBuffer, BatchTopic

__all__ = ["LookupRunner"]


class LookupRunner:
    """See the module doc."""

    def __init__(self, app: faust.App, topic: BatchTopic, table: Any, within: float) -> None:
        self.app = app
        self.topic = topic
        self.table = table
        self.within = within

    @classmethod
    def create(
        cls, app: faust.App, stage: str, spec: Lookup, *, partitions: int, within: float = 0.2
    ) -> LookupRunner:
        buffer = BatchBuffer(maxsize=20_000, batch_size=5_000)
        topic = BatchTopic(
            app,
            topics=[spec.table_from],
            schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
            buffer=buffer,
        )
        app.topics.add(topic)
        table = app.Table(
            f"{stage}-lookup",
            default=None,
            partitions=partitions,
            schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
        )
        return cls(app, topic, table, within)

    def get(self, key: bytes) -> dict[str, Any] | None:
        raw = self.table.data.get(key.decode(errors="replace"))
        if raw is None:
            return None
        value = orjson.loads(raw)
        return value if isinstance(value, dict) else None

    async def run(self) -> None:
        while True:
            events = await self.topic.buffer.take(self.within)
            if not events:
                continue
            data = self.table.data
            for ev in events:
                m = ev.message
                if m.key is None:
                    continue
                # text keys/values: what Faust's recovery gives back (see streams.runner)
                key = bytes(m.key).decode(errors="replace")
                value = None if m.value is None else bytes(m.value).decode(errors="replace")
                self.table.send_changelog(m.partition, key, value)
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
            await self.app.producer.flush()
            for ev in events:
                ev.ack()
